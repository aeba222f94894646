"""The notifier's Prometheus metrics, registered on a registry given by the composition root."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sockets_open = Gauge(
            "albatross_notifier_sockets_open", "WebSockets currently open (authenticated or not)",
            registry=registry)
        self.sockets_authenticated = Gauge(
            "albatross_notifier_sockets_authenticated", "WebSockets past authentication",
            registry=registry)
        self.messages_sent = Counter(
            "albatross_notifier_messages_sent_total", "Messages written to WebSockets",
            ["type"], registry=registry)
        self.drops = Counter(
            "albatross_notifier_drops_total",
            "Messages not delivered because the socket could not keep up (it is then closed)",
            ["reason"], registry=registry)
        self.closes = Counter(
            "albatross_notifier_closes_total", "WebSocket closes by close code and initiator",
            ["code", "by"], registry=registry)
        self.origin_refused = Counter(
            "albatross_notifier_origin_refused_total",
            "WebSocket handshakes refused for their Origin", registry=registry)
        self.changes_received = Counter(
            "albatross_notifier_changes_received_total",
            "Messages read from the changes stream (live)", registry=registry)
        self.changes_undecodable = Counter(
            "albatross_notifier_changes_undecodable_total",
            "Messages of the changes stream that could not be decoded (skipped)",
            registry=registry)
        self.feed_gaps = Counter(
            "albatross_notifier_feed_gaps_total",
            "Times the live changes feed skipped changes and the hub replayed them",
            registry=registry)
        self.feed_resubscriptions = Counter(
            "albatross_notifier_feed_resubscriptions_total",
            "Times the live changes feed was replaced (it ended, failed, or fell behind)",
            registry=registry)
        self.change_sequence = Gauge(
            "albatross_notifier_change_sequence", "Last changes-stream sequence received",
            registry=registry)
        self.replays = Counter(
            "albatross_notifier_replays_total", "Resume requests served", registry=registry)
        self.revocations = Counter(
            "albatross_notifier_revocation_signals_total",
            "Signals that a credential may be revoked, by kind", ["signal"], registry=registry)
