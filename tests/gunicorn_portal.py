"""A real gunicorn serving the portal on a private SQLite database, for tests that need real workers."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, wait_for

BASE_DIR = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


@dataclass
class Portal:
    port: int
    token: str
    database: Path

    def sql(self, statement: str, *params: object) -> None:
        """One committed write from outside the portal (as another process's round would make it)."""
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as conn:
            conn.execute(statement, params)
            conn.commit()

    def raw(self, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
        """Send bytes as they are (chunked bodies included) and read the whole answer: (status, body)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body


def manage(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@contextlib.contextmanager
def gunicorn_portal(
    tmp_path: Path, *, workers: int = 1, config: str = "", access_log: Path | None = None, **extra: str
) -> Iterator[Portal]:
    """Migrate a private database, import `config` (TOML), make a superuser `ops` with a token, serve it
    (gunicorn's access log to `access_log` when given)."""
    port = free_port()
    database = tmp_path / "db.sqlite3"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
        "LOG_DIR": str(tmp_path / "logs"),
        "DATABASE_URL": f"sqlite:///{database}",
        "REDIS_URL": "",
        "STATIC_MANIFEST": "false",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": str(workers),
        "DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(16),
        **extra,
    }
    manage(env, "migrate", "-v0")
    manage(env, "createcachetable")
    manage(env, "createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.org")
    token = manage(env, "createapitoken", "ops").strip()
    if config:
        (tmp_path / "portal.toml").write_text(config)
        manage(env, "importconfig", str(tmp_path / "portal.toml"))
    logging = ["--access-logfile", str(access_log)] if access_log else []
    proc = subprocess.Popen(
        [GUNICORN, "opsportal.wsgi", "-c", "gunicorn.conf.py", *logging],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    portal = Portal(port, token, database)
    try:

        def live() -> bool:
            try:
                return (
                    portal.raw(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")[0] == 200
                )
            except OSError:
                return False

        assert wait_for(live, timeout=30)
        yield portal
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
