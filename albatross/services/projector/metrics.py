"""The projector's Prometheus metrics, registered on the process's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProjectorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events_applied = Counter(
            "albatross_projector_events_applied_total",
            "Events projected into the read models (first time only).", registry=registry)
        self.duplicates = Counter(
            "albatross_projector_duplicates_skipped_total",
            "Redelivered events at or below the checkpoint, skipped.", registry=registry)
        self.poison = Counter(
            "albatross_projector_poison_events_total",
            "Events recorded as poison (undecodable, unknown type, inapplicable) and skipped.",
            registry=registry)
        self.batches = Counter(
            "albatross_projector_batches_total", "Batches committed.", registry=registry)
        self.resets = Counter(
            "albatross_projector_consumer_resets_total",
            "Times the consumer was moved back to the checkpoint (start, error, gap).",
            registry=registry)
        self.changes_published = Counter(
            "albatross_projector_changes_published_total",
            "Change messages published from the outbox.", registry=registry)
        self.checkpoint = Gauge(
            "albatross_projector_checkpoint_sequence",
            "Last event-store sequence reflected by the read models.", registry=registry)
        self.lag_events = Gauge(
            "albatross_projector_lag_events",
            "Events under albatross.events.> not yet projected (consumer pending).",
            registry=registry)
        self.lag_seconds = Gauge(
            "albatross_projector_lag_seconds",
            "Age of the newest projected event when its batch committed (0 when idle).",
            registry=registry)
        self.outbox_pending = Gauge(
            "albatross_projector_outbox_pending",
            "Change messages committed but not yet published.", registry=registry)
        self.leader = Gauge(
            "albatross_projector_leader",
            "1 while this replica holds the applier lock, else 0.", registry=registry)
        self.event_latency = Histogram(
            "albatross_projector_event_latency_seconds",
            "From an event's storage in JetStream to the commit of its projection.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry)
        self.batch_seconds = Histogram(
            "albatross_projector_batch_seconds", "Time to apply and commit one batch.",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry)
