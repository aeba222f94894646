"""Operations endpoints every process serves: ``/healthz``, ``/readyz`` and ``/metrics``.

* ``GET /healthz``: the process is alive; always ``200 {"status": "ok"}``.
* ``GET /readyz``: runs the registered readiness checks concurrently, each bounded by
  ``check_timeout``. ``200 {"status": "ok", "checks": {"nats": "ok", ...}}`` when all pass,
  else ``503 {"status": "unavailable", "checks": {"nats": "timeout after 2 s", ...}}``. Once
  the ``stopping`` event is set it answers 503 (with a ``"shutdown"`` entry) so that load
  balancers drain the process.
* ``GET /metrics``: the Prometheus text format of the registry given to the constructor (never
  the process-global default registry).

A process with its own aiohttp application calls :meth:`OpsEndpoints.add_routes`; one without
(the projector) calls :func:`serve_ops` and ``await runner.cleanup()`` when it stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from albatross.services.gateway.security_headers import add_security_headers

ReadinessCheck = Callable[[], Awaitable[None]]
"""Returns when the dependency answers; raises (anything) when it does not."""

MULTIPROCESS_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's switch for processes that share a port: it must be in the environment
before the process starts (the library picks how it stores values when it is imported)."""

CHECK_OK = "ok"
DEFAULT_CHECK_TIMEOUT = 2.0
_MAX_DETAIL = 200


class OpsEndpoints:
    """The handlers of the three operations endpoints, bound to one process's state."""

    def __init__(self, registry: CollectorRegistry,
                 checks: Mapping[str, ReadinessCheck] | None = None, *,
                 check_timeout: float = DEFAULT_CHECK_TIMEOUT,
                 stopping: asyncio.Event | None = None) -> None:
        self._registry = registry
        self._checks: dict[str, ReadinessCheck] = dict(checks or {})
        self._check_timeout = check_timeout
        self._stopping = stopping

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Register a readiness check after construction (e.g. once a client exists)."""
        self._checks[name] = check

    def add_routes(self, app: web.Application, *, prefix: str = "") -> None:
        """Add ``{prefix}/healthz``, ``{prefix}/readyz`` and ``{prefix}/metrics`` to ``app``."""
        app.router.add_get(f"{prefix}/healthz", self.healthz)
        app.router.add_get(f"{prefix}/readyz", self.readyz)
        app.router.add_get(f"{prefix}/metrics", self.metrics)

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Run every check; whether all passed, and each one's result (``"ok"`` or why not)."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_check(self._checks[name]) for name in names))
        checks = dict(zip(names, results, strict=True))
        if self._stopping is not None and self._stopping.is_set():
            checks["shutdown"] = "stopping"
        return all(result == CHECK_OK for result in checks.values()), checks

    async def _run_check(self, check: ReadinessCheck) -> str:
        try:
            async with asyncio.timeout(self._check_timeout):
                await check()
        except TimeoutError:
            return f"timeout after {self._check_timeout:g} s"
        except Exception as exc:
            detail = str(exc).strip().replace("\n", " ")
            text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            return text[:_MAX_DETAIL]
        return CHECK_OK

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        ready, checks = await self.readiness()
        if ready:
            return web.json_response({"status": "ok", "checks": checks})
        return web.json_response({"status": "unavailable", "checks": checks}, status=503)

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})


def scraped_registry(registry: CollectorRegistry,
                     environ: Mapping[str, str]) -> CollectorRegistry:
    """What ``/metrics`` should serve: ``registry`` itself, or in multi-process mode the sum
    over every process that writes to the directory in ``PROMETHEUS_MULTIPROC_DIR``.

    Several gateway processes share one port and a scrape reaches any of them, so each must
    answer with all of them; only counters, gauges and histograms are summed that way.
    """
    directory = environ.get(MULTIPROCESS_METRICS_ENV)
    if not directory:
        return registry
    summed = CollectorRegistry()
    MultiProcessCollector(summed, path=directory)  # type: ignore[no-untyped-call]
    return summed


async def serve_ops(host: str, port: int, endpoints: OpsEndpoints, *,
                    shutdown_timeout: float = 2.0) -> web.AppRunner:
    """Serve only the operations endpoints on ``host:port``; call ``runner.cleanup()`` to stop.

    ``port`` 0 picks a free port; ``runner.addresses`` tells which.
    """
    app = web.Application()
    add_security_headers(app)
    endpoints.add_routes(app)
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
