"""``albatross up``: the whole platform on one machine, as supervised child processes.

Order: embedded (or given) NATS and PostgreSQL, then the bootstrap child to completion, then
one supervised child per long-running service (gateway, projector, notifier: whichever module
exists). The gateway may be several children on its one port (``ALBATROSS_GATEWAY_PROCESSES``;
by default one per two CPUs, at most 4): a gateway process is single-threaded Python, and the
kernel spreads connections among them. Children get the environment of ``albatross up``
plus ``ALBATROSS_NATS_URL`` and ``ALBATROSS_DATABASE_URL`` pointing at the servers.

Supervision rules (:class:`Supervisor`):

* every child runs in its own session, so a terminal Ctrl-C reaches only this process, which
  then stops the children in order: SIGTERM to each child's process group, SIGKILL to the
  groups still alive after ``stop_timeout`` seconds, then the servers are stopped;
* a child that exits while no stop was requested (whatever its exit code) is restarted after a
  backoff that starts at 0.5 s and doubles up to 10 s; it resets once a child stayed up 30 s;
* child output is passed through unchanged, line by line, stdout to stdout and stderr to
  stderr. The services log JSON lines that already carry their ``service`` name; the
  supervisor's own lines say ``"service": "up"`` and name the child in ``child``, and when a
  child exits they give its exit code and last stderr line.

When the gateway's ``/readyz`` answers 200, one human-facing line with the URL is written to
stdout. The bootstrap child prints the first admin's credentials itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, TextIO

import aiohttp
from structlog.typing import FilteringBoundLogger

from albatross.config import Settings, local_url
from albatross.lifecycle import Shutdown, StartupError, run_main
from albatross.observability import configure_logging, get_logger
from albatross.ops_http import MULTIPROCESS_METRICS_ENV

SERVICE_NAMES: tuple[str, ...] = ("gateway", "projector", "notifier")
BOOTSTRAP_MODULE = "albatross.services.bootstrap.main"
DEFAULT_STOP_TIMEOUT = 7.0  # leaves ~3 s of the 10 s budget for stopping the servers
_LINE_LIMIT = 1024 * 1024
_PUMP_DRAIN_TIMEOUT = 1.0


@dataclass(frozen=True)
class ServiceSpec:
    """One child process: a name for logs, its command line and extra environment."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_module(cls, name: str, module: str, env: Mapping[str, str] | None = None, *,
                   python: str = sys.executable) -> ServiceSpec:
        """Run ``python -m module`` (the module must call its ``main()`` under ``__main__``)."""
        return cls(name, (python, "-m", module), dict(env or {}))


def module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


GATEWAY_MODULE = "albatross.services.gateway.main"
MAX_AUTO_GATEWAY_PROCESSES = 4


def default_services(names: Sequence[str] = SERVICE_NAMES, *,
                     gateways: Sequence[ServiceSpec] | None = None) -> list[ServiceSpec]:
    """Specs of the services whose ``albatross.services.<name>.main`` module exists.

    ``gateways``: the gateway's processes (:func:`gateway_services`); one by default.
    """
    specs: list[ServiceSpec] = []
    for name in names:
        module = f"albatross.services.{name}.main"
        if not module_exists(module):
            continue
        if name == "gateway" and gateways is not None:
            specs.extend(gateways)
        else:
            specs.append(ServiceSpec.for_module(name, module))
    return specs


def gateway_process_count(configured: int, usable_cpus: int | None = None) -> int:
    """``configured``, or for ``0`` one per two usable CPUs, at least 1 and at most 4.

    The gateway shares the machine with NATS, PostgreSQL, the projector and the notifier: on
    two CPUs a second gateway process raised uncached reads by 40% but made commands slower
    (docs/performance.md, seventh session).
    """
    if configured > 0:
        return configured
    if usable_cpus is None:
        usable_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    return max(1, min(usable_cpus // 2, MAX_AUTO_GATEWAY_PROCESSES))


def gateway_services(configured: int, state_dir: Path, *,
                     usable_cpus: int | None = None) -> list[ServiceSpec]:
    """The gateway's processes: ``gateway`` alone, or ``gateway-1``... sharing the HTTP port.

    Several processes count their metrics together in ``state_dir/gateway-metrics`` (emptied
    here: an earlier run's counts must not be added in), so that ``/metrics`` answers the same
    whichever process takes the scrape, and share the bound on concurrent password hashes
    through the lock files in ``state_dir/hashing-slots``.
    """
    count = gateway_process_count(configured, usable_cpus)
    if count == 1:
        return [ServiceSpec.for_module("gateway", GATEWAY_MODULE)]
    metrics_dir = state_dir / "gateway-metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    shared = {"ALBATROSS_HTTP_REUSE_PORT": "true", MULTIPROCESS_METRICS_ENV: str(metrics_dir),
              "ALBATROSS_HASHING_SLOTS_DIR": str(state_dir / "hashing-slots")}
    return [ServiceSpec.for_module(f"gateway-{n}", GATEWAY_MODULE, shared)
            for n in range(1, count + 1)]


@dataclass(frozen=True)
class Backoff:
    """Restart delays: ``initial`` doubling up to ``maximum``; reset after ``reset_after`` up."""

    initial: float = 0.5
    maximum: float = 10.0
    reset_after: float = 30.0

    def after(self, delay: float) -> float:
        return min(delay * 2, self.maximum)


@dataclass(frozen=True)
class ChildExit:
    """How a child ended on its own: exit code (negative: killed by that signal)."""

    code: int
    last_error: str | None

    def describe(self) -> str:
        how = (f"killed by {_signal_name(-self.code)}" if self.code < 0
               else f"exit code {self.code}")
        return f"{how}: {self.last_error}" if self.last_error else how


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _Output:
    """A byte stream that receives whole lines; a closed reader does not stop the supervisor."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def line(self, data: bytes) -> None:
        if not data.endswith(b"\n"):
            data += b"\n"
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._stream.write(data)
            self._stream.flush()


class _Child:
    """A running child process, its output pumps and the last line it wrote to stderr."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, stdout: _Output,
                 stderr: _Output) -> None:
        self.name = name
        self.process = process
        self.last_error: str | None = None
        assert process.stdout is not None
        assert process.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(process.stdout, stdout, is_stderr=False)),
            asyncio.create_task(self._pump(process.stderr, stderr, is_stderr=True)),
        ]

    async def _pump(self, reader: asyncio.StreamReader, out: _Output, *, is_stderr: bool) -> None:
        while True:
            try:
                data = await reader.readline()
            except ValueError:  # a line longer than the limit: it is dropped, reading goes on
                out.line(f"[{self.name}: an output line over {_LINE_LIMIT} bytes was "
                         "dropped]".encode())
                continue
            if not data:
                return
            out.line(data)
            if is_stderr and data.strip():
                self.last_error = data.decode("utf-8", errors="replace").strip()[:500]

    async def exited_or(self, stopping: asyncio.Event) -> bool:
        """Wait until the child exits (True) or ``stopping`` is set while it runs (False)."""
        exit_wait = asyncio.ensure_future(self.process.wait())
        stop_wait = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({exit_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exit_wait.cancel()
            stop_wait.cancel()
        return self.process.returncode is not None

    def _signal_group(self, signum: signal.Signals) -> None:
        if self.process.returncode is not None:
            return
        # The child leads its own session and process group: reach its own children too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    async def stop(self, timeout: float, log: FilteringBoundLogger) -> None:
        """SIGTERM, wait ``timeout`` seconds, then SIGKILL; always reaps the child."""
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            log.warning("service ignored SIGTERM; killing it", child=self.name,
                        pid=self.process.pid, waited_seconds=timeout)
            self._signal_group(signal.SIGKILL)
            await self.process.wait()
        await self.drain()

    def kill_now(self) -> None:
        self._signal_group(signal.SIGKILL)

    async def drain(self) -> None:
        """Let the pumps forward what is left in the pipes, briefly."""
        _done, pending = await asyncio.wait(self._pumps, timeout=_PUMP_DRAIN_TIMEOUT)
        for task in pending:
            task.cancel()


class Supervisor:
    """Starts, restarts and stops child processes; see the module docs for the rules."""

    def __init__(self, services: Sequence[ServiceSpec], *, env: Mapping[str, str],
                 log: FilteringBoundLogger, backoff: Backoff | None = None,
                 stop_timeout: float = DEFAULT_STOP_TIMEOUT, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None) -> None:
        names = [spec.name for spec in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self._services = tuple(services)
        self._env = dict(env)
        self._log = log
        self._backoff = backoff or Backoff()
        self._stop_timeout = stop_timeout
        self._stdout = _Output(stdout if stdout is not None else sys.stdout.buffer)
        self._stderr = _Output(stderr if stderr is not None else sys.stderr.buffer)
        self._restarts: dict[str, int] = dict.fromkeys(names, 0)
        self._children: dict[str, _Child] = {}

    @property
    def services(self) -> tuple[ServiceSpec, ...]:
        return self._services

    @property
    def restarts(self) -> Mapping[str, int]:
        """How many times each service was restarted after exiting on its own."""
        return dict(self._restarts)

    def pid(self, name: str) -> int | None:
        """The pid of the service's current child process, if one runs."""
        child = self._children.get(name)
        return child.process.pid if child is not None else None

    async def run_to_completion(self, spec: ServiceSpec,
                                stopping: asyncio.Event) -> ChildExit | None:
        """Run a one-shot child (bootstrap); ``None`` when stopped by ``stopping`` first."""
        return await self._run_child(spec, stopping)

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep every service running until ``stopping`` is set, then stop them all."""
        tasks = [asyncio.create_task(self._keep_running(spec, stopping), name=spec.name)
                 for spec in self._services]
        try:
            await asyncio.gather(*tasks)
            await stopping.wait()  # with no services at all, the servers keep running
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _keep_running(self, spec: ServiceSpec, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        delay = self._backoff.initial
        while not stopping.is_set():
            started = loop.time()
            ended = await self._run_child(spec, stopping)
            if ended is None:
                return
            if loop.time() - started >= self._backoff.reset_after:
                delay = self._backoff.initial
            self._log.warning("service exited; restarting", child=spec.name,
                              reason=ended.describe(), restart_in_seconds=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            if stopping.is_set():
                return
            self._restarts[spec.name] += 1
            delay = self._backoff.after(delay)

    async def _run_child(self, spec: ServiceSpec, stopping: asyncio.Event) -> ChildExit | None:
        if stopping.is_set():
            return None
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**self._env, **spec.env},
                start_new_session=True,
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            return ChildExit(code=127, last_error=f"cannot start {spec.command[0]}: {exc}")
        child = _Child(spec.name, process, self._stdout, self._stderr)
        self._children[spec.name] = child
        self._log.info("service started", child=spec.name, pid=process.pid)
        try:
            if await child.exited_or(stopping):
                await child.drain()
                code = process.returncode
                assert code is not None
                return ChildExit(code=code, last_error=child.last_error)
            await child.stop(self._stop_timeout, self._log)
            self._log.info("service stopped", child=spec.name, code=process.returncode)
            return None
        finally:
            child.kill_now()  # only does something when cancelled half-way
            self._children.pop(spec.name, None)


async def announce_when_ready(url: str, stopping: asyncio.Event, out: TextIO, *,
                              interval: float = 0.5, request_timeout: float = 2.0) -> bool:
    """Poll ``{url}/readyz`` until it answers 200, then write the URL once to ``out``."""
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stopping.is_set():
            try:
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        out.write(f"Albatross is ready: {url}\n")
                        out.flush()
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
    return False


def port_in_use(host: str, port: int) -> bool:
    """Whether another process listens on ``host:port`` (a port that is merely in TIME_WAIT,
    or a host this machine does not have, is left for the service to report)."""
    if port == 0:
        return False
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except OSError:
        return False
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def refuse_taken_ports(settings: Settings, services: Sequence[str]) -> None:
    """StartupError naming a port another process holds: the service would only restart in
    a loop, and the URL announced would be the other process's."""
    ports = {"gateway": ("ALBATROSS_HTTP_PORT", settings.http_port),
             "projector": ("ALBATROSS_PROJECTOR_PORT", settings.projector_port),
             "notifier": ("ALBATROSS_NOTIFIER_PORT", settings.notifier_port)}
    for name in services:
        variable, port = ports[name]
        if port_in_use(settings.http_host, port):
            raise StartupError(f"port {port} ({variable}) is in use by another process (an "
                               f"earlier albatross up still running?): stop it or set "
                               f"{variable}")


class ServerUrls(Protocol):
    @property
    def nats_url(self) -> str: ...

    @property
    def database_url(self) -> str: ...


class InfrastructureFactory(Protocol):
    """The signature of :func:`albatross.infra.provider.infrastructure`."""

    def __call__(self, data_dir: Path, *, nats_url: str | None = ...,
                 database_url: str | None = ...) -> AbstractAsyncContextManager[ServerUrls]: ...


def child_environment(environ: Mapping[str, str], servers: ServerUrls) -> dict[str, str]:
    return {**environ, "ALBATROSS_NATS_URL": servers.nats_url,
            "ALBATROSS_DATABASE_URL": servers.database_url, "PYTHONUNBUFFERED": "1"}


async def up(settings: Settings, shutdown: Shutdown, *, environ: Mapping[str, str],
             infrastructure: InfrastructureFactory,
             services: Sequence[ServiceSpec] | None = None,
             bootstrap: ServiceSpec | None = None, backoff: Backoff | None = None,
             stop_timeout: float = DEFAULT_STOP_TIMEOUT, announce: TextIO | None = None,
             stdout: BinaryIO | None = None, stderr: BinaryIO | None = None) -> None:
    """Run the platform until ``shutdown`` is requested; :class:`StartupError` if it cannot.

    ``services`` defaults to :func:`default_services`, ``bootstrap`` to the bootstrap module;
    tests inject fake commands and a fake ``infrastructure``.
    """
    log = get_logger("up")
    bootstrap_spec = bootstrap or ServiceSpec.for_module("bootstrap", BOOTSTRAP_MODULE)
    specs = list(services) if services is not None else default_services(
        gateways=gateway_services(settings.gateway_processes, settings.data_dir))
    running = {spec.name.partition("-")[0] for spec in specs}
    refuse_taken_ports(settings, [name for name in SERVICE_NAMES if name in running])
    async with AsyncExitStack() as stack:
        # A first initdb or a crash recovery can take longer than a stop may wait: a stop
        # request cancels the start, and the servers already spawned are stopped.
        starting = asyncio.ensure_future(stack.enter_async_context(infrastructure(
            settings.data_dir, nats_url=settings.nats_url,
            database_url=settings.database_url)))
        stop_wait = asyncio.ensure_future(shutdown.requested.wait())
        await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            log.info("stopped while NATS/PostgreSQL were starting")
            return
        try:
            servers = starting.result()
        except Exception as exc:
            raise StartupError(f"cannot start NATS/PostgreSQL: {type(exc).__name__}: "
                               f"{exc}") from exc
        supervisor = Supervisor(specs, env=child_environment(environ, servers), log=log,
                                backoff=backoff, stop_timeout=stop_timeout, stdout=stdout,
                                stderr=stderr)
        ended = await supervisor.run_to_completion(bootstrap_spec, shutdown.requested)
        if ended is None:
            return
        if ended.code != 0:
            raise StartupError(f"bootstrap failed ({ended.describe()})")
        log.info("bootstrap done; starting services", services=[s.name for s in specs])
        missing = [name for name in SERVICE_NAMES if name not in running]
        if missing:
            log.warning("services not available in this build", services=missing)
        announcer: asyncio.Task[bool] | None = None
        if "gateway" in running:
            announcer = asyncio.create_task(announce_when_ready(
                local_url(settings.http_host, settings.http_port), shutdown.requested,
                announce if announce is not None else sys.stdout))
        try:
            await supervisor.run(shutdown.requested)
        finally:
            if announcer is not None:
                announcer.cancel()
                await asyncio.gather(announcer, return_exceptions=True)
        log.info("services stopped; stopping NATS/PostgreSQL")


def main() -> None:
    """Entry point of ``albatross up``."""
    from albatross.infra.provider import infrastructure

    async def serve(shutdown: Shutdown) -> None:
        settings = Settings.from_env(os.environ)
        configure_logging("up", settings.log_level, human=settings.dev_mode)
        await up(settings, shutdown, environ=dict(os.environ), infrastructure=infrastructure)

    # The supervisor times its own stop (children, then servers): no cancellation half-way.
    run_main(serve, name="albatross up", cancel_after=None)


if __name__ == "__main__":
    main()
