"""Browser end-to-end fixtures: the real all-in-one ``albatross up`` and Debian's chromium.

Chromium comes from the distribution (``apt-get install chromium``), driven by the Python
``playwright`` package through ``executable_path``; ``playwright install`` is never needed.
Screenshots go to ``test-artifacts/screenshots/`` (gitignored), the server's output to
``test-artifacts/albatross-up.log``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
WEB_DIST = REPO / "web" / "dist"
CHROMIUM = os.environ.get("ALBATROSS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ADMIN_EMAIL = "admin@albatross.local"
ADMIN_PASSWORD = "e2e-admin-password-1"
READY_TIMEOUT = 180.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives the web UI in a real browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=60))

    def recent_output(self) -> str:
        return "\n".join(self.tail)


def _pump(stream: Any, sink: Any, tail: deque[str], ready: list[str],
          event: threading.Event) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        sink.write(line + "\n")
        sink.flush()
        tail.append(line[:500])
        if line.startswith("Albatross is ready: "):
            ready.append(line.removeprefix("Albatross is ready: ").strip())
            event.set()
    stream.close()


def _albatross_executable() -> str:
    candidate = Path(sys.executable).parent / "albatross"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("albatross")
    if not found:
        pytest.fail("the `albatross` command is not installed (pip install -e '.[dev]')")
    return found


@pytest.fixture(scope="session")
def chromium_path() -> str:
    pytest.importorskip("playwright.sync_api", reason="the Python `playwright` package is not "
                        "installed (it is in the dev extra)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install "
                    "chromium) to run the browser tests")
    return CHROMIUM


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """The built UI; built here (``make -C web build``) when missing."""
    if not (WEB_DIST / "index.html").exists():
        result = subprocess.run(["make", "-C", str(REPO / "web"), "build"], capture_output=True,
                                text=True, timeout=600, check=False)
        if result.returncode != 0:
            pytest.fail(f"building the web UI failed:\n{result.stdout[-3000:]}\n"
                        f"{result.stderr[-3000:]}")
    return WEB_DIST


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    if SCREENSHOTS.exists():
        for old in SCREENSHOTS.glob("*.png"):
            old.unlink()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def albatross_up(web_dist: Path, tmp_path_factory: pytest.TempPathFactory,
                 chromium_path: str) -> Iterator[Server]:
    """``albatross up`` on free ports with a fresh data directory; SIGTERM at the end."""
    data_dir = tmp_path_factory.mktemp("albatross-data")
    env = {
        **os.environ,
        "ALBATROSS_DATA_DIR": str(data_dir),
        "ALBATROSS_HTTP_PORT": str(free_port()),
        "ALBATROSS_PROJECTOR_PORT": str(free_port()),
        "ALBATROSS_NOTIFIER_PORT": str(free_port()),
        "ALBATROSS_ADMIN_EMAIL": ADMIN_EMAIL,
        "ALBATROSS_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ALBATROSS_WEB_DIR": str(web_dist),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / "albatross-up.log"
    process = subprocess.Popen([_albatross_executable(), "up"], env=env, cwd=data_dir,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail: deque[str] = deque(maxlen=60)
    ready: list[str] = []
    event = threading.Event()
    sink = log.open("w", encoding="utf-8")
    pump = threading.Thread(target=_pump, args=(process.stdout, sink, tail, ready, event),
                            daemon=True)
    pump.start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not event.wait(0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pump.join(5)
            sink.close()
            what = (f"exited with {process.returncode}" if process.returncode is not None
                    else f"not ready within {READY_TIMEOUT:.0f} s")
            pytest.fail(f"`albatross up` {what}; its last output ({log}):\n"
                        + "\n".join(tail))
    server = Server(url=ready[0].rstrip("/"), process=process, log=log, tail=tail)
    try:
        yield server
    finally:
        code = _stop(process)
        pump.join(5)
        sink.close()
        # SIGTERM must stop everything cleanly (contract: exit 0 within 10 s).
        assert code == 0, f"`albatross up` exited with {code} after SIGTERM; see {log}"


def _stop(process: subprocess.Popen[bytes]) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
