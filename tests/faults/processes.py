"""Service processes for tests that run the mesh for real: spawn, wait until ready, kill.

Shared by the fault tests (``tests/faults``) and the scaled-mesh test (``tests/integration``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from albatross.infra._process import log_tail

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 45.0


@dataclass
class Service:
    """One service process; its stdout and stderr go to ``log``."""

    name: str
    module: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 30) -> str:
        return f"--- {self.name} (exit {self.popen.poll()}) {self.log} ---\n" + log_tail(
            self.log, lines)

    def kill(self) -> None:
        """SIGKILL, as a crash would, and reap the process."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


def spawn(name: str, module: str, env: dict[str, str], log_dir: Path,
          port_var: str | None = None, port: int = 0) -> Service:
    log = log_dir / f"{name}.log"
    full_env = dict(env)
    if port_var is not None:
        full_env[port_var] = str(port)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", module], env=full_env, cwd=REPO,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return Service(name, module, port, log, popen)


async def wait_ready(http: aiohttp.ClientSession, service: Service,
                     timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            async with http.get(f"{service.base}/readyz",
                                timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
                last = f"{response.status} {await response.text()}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = repr(exc)
        assert service.popen.poll() is None, f"{service.name} exited early"
        assert time.monotonic() < deadline, (
            f"{service.name} not ready after {timeout} s (last: {last})")
        await asyncio.sleep(0.1)
