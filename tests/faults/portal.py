"""A whole portal in real processes for the fault tests: its own database, `manage.py`, gunicorn, qcluster.

The database is a SQLite file under the test's tmp dir, or, when the suite runs on PostgreSQL, a database
of its own (`test_h9_*`) on the same server, dropped afterwards. Every process is started in its own
session and stopped (then killed, whole session) by `stop()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests

from tests.conftest import postgres_configured
from tests.servers import free_port
from tests.tiers import worker_tag

BASE_DIR = Path(__file__).resolve().parents[2]


def needs_redis(url: str) -> pytest.MarkDecorator:
    """Skip a module's tests unless Redis answers at `url` (CI starts one)."""
    try:
        up = bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        up = False
    return pytest.mark.skipif(not up, reason=f"needs Redis at {url} (CI starts one)")


def server_url(database: str) -> str:
    """The suite's DATABASE_URL with another database name (same server, same user)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.contextmanager
def own_database(tmp_path: Path, name: str) -> Iterator[str]:
    """A DATABASE_URL for a fresh database: PostgreSQL when the suite runs on it, else a SQLite file."""
    if not postgres_configured():
        yield f"sqlite:///{tmp_path / 'portal.sqlite3'}"
        return
    import psycopg

    name = f"{name}_{worker_tag()}"  # no other worker or run on this server has it (tests/tiers.py)
    admin = server_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Portal:
    def __init__(self, tmp_path: Path, database_url: str, **env: str) -> None:
        self.tmp = tmp_path
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_NAME", "DJANGO_SETTINGS_MODULE")},
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "STATIC_MANIFEST": "false",
            "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
            "LOG_DIR": str(tmp_path / "logs"),
            "WEB_WORKERS": "2",
            "WEB_MAX_REQUESTS": "0",
            **env,
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.url = ""

    def manage(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
        if check and proc.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return proc

    def install(self, config: Path) -> None:
        """What `make setup` does that these tests need: migrate, the cache table, the config."""
        self.manage("migrate", "-v0")
        self.manage("createcachetable")
        self.manage("importconfig", str(config))

    def spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen:
        log = (self.tmp / f"{name}.log").open("a")
        proc = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_web(self) -> str:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.spawn("web", [sys.executable, "-m", "gunicorn", "opsportal.wsgi"], WEB_BIND=f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/health/live", timeout=2).status_code == 200:
                    return self.url
            if self.procs["web"].poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer /health/live:\n" + self.log("web")[-3000:])

    def start_qcluster(self, name: str = "qcluster") -> subprocess.Popen:
        return self.spawn(name, [sys.executable, "manage.py", "qcluster"])

    def kill(self, name: str) -> None:
        """SIGKILL the process's whole session: a host that dies, workers and all."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        # SIGTERM to each main process (qcluster stops its own workers), then whatever is left of the session.
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def results(self) -> dict[str, list[datetime]]:
        """Every probe result's checked_at, by service name, oldest first."""
        out: dict[str, list[datetime]] = {}
        rows = self.query(
            "SELECT s.name, r.checked_at FROM health_proberesult r "
            "JOIN health_service s ON s.id = r.service_id ORDER BY r.checked_at"
        )
        for name, at in rows:
            out.setdefault(name, []).append(at)
        return out

    def query(self, sql: str) -> list[tuple]:
        """Read the portal's database directly (no Django in this process touches it); times come back aware."""
        url = self.env["DATABASE_URL"]
        if url.startswith("sqlite:///"):
            import sqlite3

            with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)) as conn:
                rows = conn.execute(sql).fetchall()
        else:
            import psycopg

            with psycopg.connect(url) as conn:
                rows = conn.execute(sql).fetchall()
        return [tuple(_aware(v) for v in row) for row in rows]


class Poller(threading.Thread):
    """GETs /health/live and /health/status twice a second, noting when each request started and what came back."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.seen: list[tuple[float, str, int, dict | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for path in ("/health/live", "/health/status"):
                at = time.time()
                try:
                    r = requests.get(self.base + path, timeout=10)
                    json_type = r.headers.get("Content-Type", "").startswith("application/json")
                    try:
                        body = r.json() if json_type else None
                    except ValueError:
                        body = None
                    self.seen.append((at, path, r.status_code, body))
                except requests.RequestException as exc:
                    self.seen.append((at, path, 0, {"error": type(exc).__name__}))
            self.halt.wait(0.5)

    def statuses(self, start: float = 0.0, end: float = math.inf) -> list[tuple[float, int, dict | None]]:
        return [(at, code, body) for at, p, code, body in list(self.seen) if p == "/health/status" and start < at < end]


def spooled_results(spool: Path) -> set[tuple[int, datetime]]:
    """(service pk, checked_at) of every probe result in the spool, read under the spool's own lock."""
    found: set[tuple[int, datetime]] = set()
    if not spool.exists():
        return found
    with open(spool / "spool.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the protocol core.spool uses: no half-written line is read
        try:
            for path in [spool / "spool.jsonl", *sorted(spool.glob("batch-*.jsonl"))]:
                if not path.exists():
                    continue
                for line in path.read_text().splitlines():
                    record = json.loads(line)
                    if record["kind"] == "probe_round":
                        at = datetime.fromisoformat(record["payload"]["checkedAt"])
                        found |= {(r["service"], at) for r in record["payload"]["results"]}
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return found


def slot_numbers(times: list[datetime], due: datetime, interval: float) -> list[int]:
    """The due slot each probe served. Slots are `due + k * interval` exactly (the scheduler books the next
    slot from the last due time, never from `now`, and probes on that grid from memory while the database is
    away), and a probe starts at or after its slot, within it."""
    return [math.floor((t - due).total_seconds() / interval) for t in times]


def _aware(value: object) -> object:
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
