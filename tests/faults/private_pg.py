"""A throwaway PostgreSQL server of the test's own, which the test may really stop.

The machine's PostgreSQL is shared (other engineers' suites run on it), so a fault test must never stop
it. `PrivatePostgres` builds a fresh cluster with the machine's own binaries instead: `initdb` into a new
directory under /tmp, listening on 127.0.0.1 only (a free port outside the kernel's ephemeral range, so
no outgoing connection can take it while the server is stopped), its unix socket in that directory, trust
auth, fsync off. `start()` and `stop()` (a fast shutdown, like `systemctl stop postgresql`; `stop("immediate")`
is a crash without a checkpoint) may be called any number of times; `kill()` SIGKILLs the postmaster, and the
next `start()` first waits out its orphaned backends and clears its stale postmaster.pid; leaving the context
always stops the server and removes the directory.

initdb and postgres refuse to run as root: as root they run as the `postgres` OS user
(`runuser -u postgres -- <argv>`) in a directory chown'ed to it; as anyone else they run directly.
When the binaries (or, as root, the `postgres` user or `runuser`) are missing the test is skipped.

    with PrivatePostgres() as pg:
        url = pg.create_database("portal")
        pg.stop(); ...; pg.start()
        pg.kill(); ...; pg.start()
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

SUPERUSER = "postgres"
# Ports below the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, 32768 by default):
# an outgoing connection, or a test server bound to port 0, never gets one of these.
PORT_RANGE = (20000, 32000)


def bindir() -> Path | None:
    """The directory of the machine's PostgreSQL server binaries, or None."""
    candidates: list[str] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(out.stdout.strip())
    # Debian/Ubuntu keep the server binaries off PATH; the newest major version first.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    for path in candidates:
        if path and all(os.access(Path(path, tool), os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(path)
    return None


def _major(path: str) -> int:
    version = Path(path).parent.name
    return int(version) if version.isdigit() else 0


def free_port() -> int:
    """A port nothing listens on, below the ephemeral range."""
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")


def needs_private_postgres() -> pytest.MarkDecorator:
    """Skip a module's tests, with the reason, when a private server cannot be made here."""
    reason = unavailable_reason()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def unavailable_reason() -> str | None:
    """Why a private server cannot be made here (the reason a test is skipped with), or None."""
    if bindir() is None:
        return "needs PostgreSQL's server binaries (initdb, pg_ctl: `pg_config --bindir` or /usr/lib/postgresql/*/bin)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"runs as root, and initdb refuses root: needs a `{SUPERUSER}` OS user to run it as"
        if shutil.which("runuser") is None:
            return "runs as root, and initdb refuses root: needs `runuser` to run it as another user"
    return None


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory: `start()`, `stop()`, `url`, `create_database()`."""

    def __init__(self) -> None:
        bin_path = bindir()
        if bin_path is None:
            raise RuntimeError(unavailable_reason())
        self.bin = bin_path
        self.as_root = os.geteuid() == 0
        self.port = free_port()
        self.root: Path | None = None
        self.running = False
        # The backends a kill() orphaned: a new postmaster refuses to start while they hold the shared memory.
        self.orphans: list[psutil.Process] = []

    # --- paths and commands ---------------------------------------------------------------
    @property
    def data(self) -> Path:
        assert self.root is not None, "not set up: use `with PrivatePostgres() as pg`"
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """The `postgres` database, as the superuser (trust auth: no password)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [str(self.bin / tool), *args]
        if self.as_root:
            argv = ["runuser", "-u", SUPERUSER, "--", *argv]
        # cwd: the server's own directory (the postgres user may not be able to read the caller's).
        proc = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=timeout)
        if proc.returncode:
            raise RuntimeError(
                f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
                f"\n{self.log()[-2000:]}"
            )
        return proc

    def log(self) -> str:
        if self.root is None or not self.logfile.exists():
            return ""
        return self.logfile.read_text(errors="replace")

    # --- life cycle --------------------------------------------------------------------------
    def setup(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="opsportal-pg-"))
        if self.as_root:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",  # a throwaway cluster: nothing to make durable
            "--no-instructions",
        )
        # Appended by this (root or not) process: the file stays the postgres user's, only its text changes.
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/faults/private_pg.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 100\n"
                "shared_buffers = 32MB\n"
            )

    def start(self) -> None:
        """Start the server and wait until it accepts connections (after a kill(), its leftovers cleared first)."""
        self._clear_crash()
        self._run("pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.logfile), "--wait", "--timeout=60")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back open transactions, disconnect every client, shut down cleanly)."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", mode, "--wait", "--timeout=60")
        self.running = False

    def postmaster(self) -> psutil.Process | None:
        """The running postmaster (the PID in postmaster.pid, if that process is still alive), or None."""
        pid_file = self.data / "postmaster.pid"
        try:
            process = psutil.Process(int(pid_file.read_text().split()[0]))
            # A PID reused by some other program is not our postmaster either.
            alive = process.status() != psutil.STATUS_ZOMBIE and process.name().startswith("postgres")
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return process if alive else None

    def kill(self) -> list[int]:
        """SIGKILL the postmaster, as a crash or the OOM killer does; returns the PIDs of the orphaned backends.

        The backends live on until they notice their postmaster is gone; postmaster.pid stays behind.
        """
        process = self.postmaster()
        assert process is not None, "the server is not running"
        self.orphans = process.children(recursive=True)
        process.kill()
        psutil.wait_procs([process], timeout=10)
        self.running = False
        return [p.pid for p in self.orphans]

    def _clear_crash(self) -> None:
        """What an init system does before restarting a killed server: wait for (then kill) the orphaned
        backends, which keep the old shared memory attached, and remove a postmaster.pid whose process is gone
        (postgres refuses to start while the PID in it is any live process, a zombie included)."""
        if self.orphans:
            _, alive = psutil.wait_procs(self.orphans, timeout=10)
            for process in alive:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            psutil.wait_procs(alive, timeout=10)
            self.orphans = []
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists() and self.postmaster() is None:
            pid_file.unlink()

    def create_database(self, name: str, template: str = "") -> str:
        """A new database (a copy of `template`, e.g. one already migrated, when given); returns its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.database_url(name)

    def teardown(self) -> None:
        """Stop whatever runs (fast, else immediate, else SIGKILL of the postmaster) and remove the directory."""
        try:
            if self.root is not None and (pid_file := self.data / "postmaster.pid").exists():
                try:
                    self.stop("fast")
                except (RuntimeError, subprocess.TimeoutExpired):
                    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                        self.stop("immediate")
                    if pid_file.exists():
                        with contextlib.suppress(ValueError, IndexError, OSError):
                            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
            self.running = False

    def __enter__(self) -> PrivatePostgres:
        try:
            self.setup()
            self.start()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A running private PostgreSQL server; skipped (with the reason) where one cannot be made."""
    if reason := unavailable_reason():
        pytest.skip(reason)
    with PrivatePostgres() as pg:
        yield pg
