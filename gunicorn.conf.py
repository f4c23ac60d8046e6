"""gunicorn settings; each can be overridden on the command line or with GUNICORN_CMD_ARGS.

Under systemd (deploy/opsportal-web.service, `Type=notify`) the master tells systemd when it is
ready, and, when the unit sets `WatchdogSec`, pings the watchdog only while `/health/live` answers
through its own socket: hung workers stop the pings and systemd restarts the service.

The access log names the user the portal authenticated (opsportal/middleware.py), never the unchecked
username of a Basic-auth header; responses carry no `Server: gunicorn` header.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from gunicorn import systemd
from gunicorn.glogging import Logger
from gunicorn.http import wsgi

# The WSGI environ key opsportal.middleware.access_log_user sets (its ACCESS_LOG_USER; a test checks both agree).
ACCESS_LOG_USER = "opsportal.user"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours CPU pinning, unlike cpu_count()
    except AttributeError:
        return os.cpu_count() or 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}: must be an integer, got {raw!r}") from None


bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
# Requests are short and mostly I/O (database, cache): a few processes with threads each.
workers = _env_int("WEB_WORKERS", min(4, _cores() * 2 + 1))
threads = _env_int("WEB_THREADS", 4)
# POST /health/recover runs a recovery action (up to its own timeout) and a verifying probe.
timeout = _env_int("WEB_TIMEOUT", 120)
# On SIGTERM workers finish the requests they hold for up to this long, then exit.
graceful_timeout = _env_int("WEB_GRACEFUL_TIMEOUT", 30)
keepalive = 5
# Recycle workers now and then so a slow leak never grows without bound; jitter avoids a thundering herd.
max_requests = _env_int("WEB_MAX_REQUESTS", 2000)
max_requests_jitter = max_requests // 10
# Heartbeat files on tmpfs: a busy disk must not make the master think a worker hangs.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Only the local proxy may tell gunicorn the client's scheme and address.
forwarded_allow_ips = os.environ.get("WEB_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-"
errorlog = "-"


class PortalLogger(Logger):
    """gunicorn's logger, with `%(u)s` the user the portal authenticated, or `-`."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["u"] = environ.get(ACCESS_LOG_USER) or "-"
        return atoms


logger_class = PortalLogger


def _drop_server_header() -> None:
    """Responses without `Server: gunicorn` (no setting for it; the name and version only help an attacker)."""
    original = wsgi.Response.default_headers
    if getattr(original, "drops_server_header", False):  # this file is read again on HUP
        return

    def default_headers(self: Any) -> list[str]:
        return [line for line in original(self) if not line.lower().startswith("server:")]

    default_headers.drops_server_header = True  # type: ignore[attr-defined]
    wsgi.Response.default_headers = default_headers  # type: ignore[method-assign]


_drop_server_header()


def live_ok(family: int, address: Any, timeout_s: float = 5.0) -> bool:
    """True when GET /health/live answers 200 on a listening socket's address."""
    if family in (socket.AF_INET, socket.AF_INET6):
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address[0], address[0])
        address = (host, *address[1:])
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(address)
        sock.sendall(b"GET /health/live HTTP/1.0\r\nHost: localhost\r\n\r\n")
        return sock.recv(64).split(b" ")[1:2] == [b"200"]
    except OSError:
        return False
    finally:
        sock.close()


def _watchdog(server: Any, interval: float) -> None:
    listener = server.LISTENERS[0].sock
    family, address = listener.family, listener.getsockname()
    while True:
        time.sleep(interval)
        if live_ok(family, address, timeout_s=interval):
            systemd.sd_notify("WATCHDOG=1", server.log)
        else:
            server.log.warning("watchdog: /health/live did not answer 200 on %s; not pinging systemd", address)


def when_ready(server: Any) -> None:
    usec = os.environ.get("WATCHDOG_USEC", "")
    if usec.isdigit() and int(usec) > 0:
        # Ping at a third of the period so one slow answer does not get the service killed.
        interval = int(usec) / 1_000_000 / 3
        threading.Thread(target=_watchdog, args=(server, interval), name="sd-watchdog", daemon=True).start()


def worker_exit(server: Any, worker: Any) -> None:
    # Close database connections cleanly so PostgreSQL does not log dropped clients on every restart.
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # Django never loaded in this worker: nothing to close
        pass
