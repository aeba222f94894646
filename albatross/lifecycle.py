"""Process lifecycle shared by every Albatross process: event loop, signals, exit codes.

A process's ``main()`` hands an async ``serve(shutdown)`` function to :func:`run_main`;
``serve`` reads its settings, configures logging, connects, serves until
``shutdown.wait()`` returns, then drains. :func:`run_main`

* runs it on uvloop when that is installed (plain asyncio otherwise);
* turns SIGTERM and SIGINT into :attr:`Shutdown.requested` (repeated signals are ignored, so a
  terminal Ctrl-C followed by a supervisor's SIGTERM does not abort a clean stop);
* cancels ``serve`` if it is still running ``cancel_after`` seconds after the stop request,
  and hard-exits with :data:`EXIT_STUCK` if the process is still alive ``deadline`` seconds
  after it (a watchdog thread, so a blocked event loop cannot prevent it);
* exits 0 when ``serve`` returns, and non-zero with one line on stderr when it fails:
  :class:`StartupError` and :class:`~albatross.config.ConfigError` give just that line,
  anything else a traceback followed by that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TextIO, TypeVar

from albatross.config import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_STUCK = 70  # EX_SOFTWARE: the process did not stop within its deadline

DEFAULT_DEADLINE = 10.0
DEFAULT_CANCEL_AFTER = 8.0
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)

T = TypeVar("T")

Serve = Callable[["Shutdown"], Coroutine[Any, Any, None]]


class StartupError(Exception):
    """The process cannot start (a dependency unreachable, a port taken, bad input).

    Its message is shown to the operator as the one-line reason for a non-zero exit.
    """


class Shutdown:
    """A stop request shared by a process's tasks: set once, by a signal or by code."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.reason: str | None = None

    @property
    def is_requested(self) -> bool:
        return self.requested.is_set()

    def request(self, reason: str) -> None:
        """Ask the process to stop; later calls keep the first reason."""
        if self.reason is None:
            self.reason = reason
        self.requested.set()

    async def wait(self) -> None:
        await self.requested.wait()


async def close_nats(nc: Any, *, drain_within: float = 2.0) -> None:
    """Drain a NATS connection (what was sent and received is finished), then close it.

    With NATS down at the stop (an outage, a rolling restart of the servers), draining and
    closing fail: nothing more can go over that connection anyway, so the stop goes on and
    the process still exits 0, as the contract asks of a SIGTERM.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(drain_within):
            await nc.drain()
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            await nc.close()


async def connect_dependency(what: str, attempt: Awaitable[T], *, timeout: float) -> T:
    """Await ``attempt`` (e.g. a connect call), turning any failure into :class:`StartupError`.

    ``what`` names the dependency in the message, e.g. ``"NATS at nats://127.0.0.1:4222"``.
    """
    try:
        async with asyncio.timeout(timeout):
            return await attempt
    except TimeoutError:
        raise StartupError(f"cannot reach {what}: no answer within {timeout:g} s") from None
    except Exception as exc:
        raise StartupError(f"cannot reach {what}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Watchdog:
    """Hard-exits the process if it is still alive ``deadline`` seconds after :meth:`arm`.

    A daemon thread polls a plain attribute, so :meth:`arm` takes no lock and is safe to call
    from a signal handler, and a blocked event loop cannot delay the exit.
    """

    _POLL_SECONDS = 0.05
    # Until armed nothing can be late: wake rarely (each wake takes the GIL from the loop).
    _IDLE_POLL_SECONDS = 0.5

    def __init__(self, name: str, deadline: float, err: TextIO) -> None:
        self._name = name
        self._deadline = deadline
        self._err = err
        self._armed_at: float | None = None
        self._done = False
        self._thread = threading.Thread(target=self._watch, name="shutdown-watchdog",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def arm(self) -> None:
        if self._armed_at is None:
            self._armed_at = time.monotonic()

    def disarm(self) -> None:
        self._done = True

    def _watch(self) -> None:
        while not self._done:
            armed_at = self._armed_at
            if armed_at is not None and time.monotonic() - armed_at >= self._deadline:
                self._fire()
            time.sleep(self._IDLE_POLL_SECONDS if armed_at is None else self._POLL_SECONDS)

    def _fire(self) -> None:
        message = (f"{self._name}: error: did not stop within {self._deadline:g} s "
                   f"of the stop request; exiting {EXIT_STUCK}\n")
        try:
            self._err.write(message)
            self._err.flush()
        finally:
            os._exit(EXIT_STUCK)


async def _run_serve(serve: Serve, *, name: str, cancel_after: float | None,
                     watchdog: _Watchdog, signals: tuple[signal.Signals, ...],
                     err: TextIO) -> None:
    loop = asyncio.get_running_loop()
    shutdown = Shutdown()
    cancelled_by_us = False

    def on_signal(signum: signal.Signals) -> None:
        if not shutdown.is_requested:
            shutdown.request(signum.name)

    def handler(signum: int, _frame: object) -> None:
        # Runs in the main thread between bytecodes, even while the loop is blocked: arm the
        # deadline here, and leave the rest to the loop. Later signals change nothing.
        watchdog.arm()
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(on_signal, signal.Signals(signum))

    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        task = asyncio.create_task(serve(shutdown), name=f"{name}.serve")
        stop_wait = asyncio.create_task(shutdown.wait())
        try:
            await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
        if not task.done():
            # Code (not only a signal) may request the stop: the deadline holds either way.
            watchdog.arm()
            if cancel_after is not None:
                await asyncio.wait({task}, timeout=cancel_after)
                if not task.done():
                    err.write(f"{name}: warning: still stopping after {cancel_after:g} s; "
                              "cancelling\n")
                    err.flush()
                    cancelled_by_us = task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not cancelled_by_us:
                raise
    finally:
        # Closing the loop (pending tasks, executor threads) is bounded by the deadline too.
        watchdog.arm()
        for signum, old in previous.items():
            if old is not None:
                signal.signal(signum, old)


# Young collections once per this many new container objects instead of CPython's 700.
YOUNG_GC_THRESHOLD = 10_000


def tune_gc_for_serving() -> int:
    """Fit the cyclic garbage collector to a service that is ready to serve.

    *Start-up objects out of full collections.* A full pass otherwise walks every object the
    process holds: in the gateway, ~60,000 of them in 30-45 ms, about once a second under
    load, because requests in flight survive the young collections and push the full
    ones (a pause every request in flight waits for). After ``gc.freeze()`` a full pass walks
    only what was made since, ~5,000 objects in ~3 ms. Frozen objects are still freed by
    reference counting; only cycles among them would be kept, and start-up makes those once.

    *Fewer young collections.* At CPython's threshold of 700 the gateway ran ~100 young
    collections a second under a POST load, 4% of its CPU, each walking the objects of the
    requests in flight; at 10,000 they are ~14 times rarer and walk about as much each (what
    is in flight), for at most a few MiB more of short-lived garbage between passes
    (docs/performance.md, "Gateway"). Returns how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)
    return gc.get_freeze_count()


def _loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(serve: Serve, *, name: str, deadline: float = DEFAULT_DEADLINE,
        cancel_after: float | None = DEFAULT_CANCEL_AFTER, use_uvloop: bool = True,
        signals: tuple[signal.Signals, ...] = STOP_SIGNALS, err: TextIO | None = None) -> int:
    """Run ``serve`` to completion and return the process exit code (see module docs).

    ``cancel_after`` (seconds after the stop request; ``None``: never) must be shorter than
    ``deadline``; a ``serve`` that handles its own stop timing (the supervisor) passes ``None``.
    """
    if cancel_after is not None and cancel_after >= deadline:
        raise ValueError("cancel_after must be shorter than deadline")
    out_err = err if err is not None else sys.stderr
    watchdog = _Watchdog(name, deadline, out_err)
    watchdog.start()
    try:
        with asyncio.Runner(loop_factory=_loop_factory(use_uvloop)) as runner:
            runner.run(_run_serve(serve, name=name, cancel_after=cancel_after,
                                  watchdog=watchdog, signals=signals, err=out_err))
    except (StartupError, ConfigError) as exc:
        watchdog.disarm()
        out_err.write(f"{name}: error: {exc}\n")
        out_err.flush()
        return EXIT_FAILURE
    except (Exception, asyncio.CancelledError, KeyboardInterrupt) as exc:
        watchdog.disarm()
        traceback.print_exception(exc, file=out_err)
        out_err.write(f"{name}: error: {_describe(exc)}\n")
        out_err.flush()
        return EXIT_FAILURE
    watchdog.disarm()
    return EXIT_OK


def run_main(serve: Serve, *, name: str, deadline: float = DEFAULT_DEADLINE,
             cancel_after: float | None = DEFAULT_CANCEL_AFTER,
             use_uvloop: bool = True) -> NoReturn:
    """:func:`run` then exit the process with its code; the body of a ``main()``."""
    sys.exit(run(serve, name=name, deadline=deadline, cancel_after=cancel_after,
                 use_uvloop=use_uvloop))
