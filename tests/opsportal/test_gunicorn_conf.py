"""gunicorn.conf.py under a real gunicorn: systemd readiness, the live-checked watchdog, graceful stop."""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsportal.middleware import ACCESS_LOG_USER
from tests.gunicorn_portal import gunicorn_portal
from tests.servers import free_port, wait_for

BASE_DIR = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A stand-in for systemd's notify socket: a real AF_UNIX datagram socket we read from."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def messages(sock: socket.socket, want: str, timeout: float) -> list[str]:
    got: list[str] = []

    def received() -> bool:
        with contextlib.suppress(TimeoutError):
            got.append(sock.recv(1024).decode())
        return any(want in m for m in got)

    wait_for(received, timeout=timeout, interval=0)
    return got


@pytest.mark.system
def test_it_notifies_systemd_pings_the_watchdog_and_stops_gracefully(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "OPSPORTAL_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "1",
        "NOTIFY_SOCKET": notify_socket.getsockname(),
        "WATCHDOG_USEC": "600000",  # 0.6 s: pings every 0.2 s
    }
    proc = subprocess.Popen(
        [GUNICORN, "opsportal.wsgi", "-c", "gunicorn.conf.py"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        got = messages(notify_socket, "READY=1", timeout=30)
        assert any(m.startswith("READY=1") for m in got), got
        got = messages(notify_socket, "WATCHDOG=1", timeout=30)
        assert "WATCHDOG=1" in got, got
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
        assert "Shutting down" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def load_conf() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gunicorn_conf", BASE_DIR / "gunicorn.conf.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_pings_only_when_live_answers_200(make_http_server) -> None:
    from tests.servers import Reply

    conf = load_conf()
    server = make_http_server()
    server.routes["/health/live"] = Reply(200, {"status": "alive"})
    assert conf.live_ok(socket.AF_INET, ("127.0.0.1", server.port)) is True
    server.routes["/health/live"] = Reply(503, {"status": "down"})
    assert conf.live_ok(socket.AF_INET, ("127.0.0.1", server.port)) is False
    assert conf.live_ok(socket.AF_INET, ("127.0.0.1", free_port())) is False
    hung = make_http_server()
    hung.reply = Reply(hang=True)
    assert conf.live_ok(socket.AF_INET, ("0.0.0.0", hung.port), timeout_s=0.3) is False


def test_it_sizes_workers_from_cores_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_WORKERS", raising=False)
    assert load_conf().workers == min(4, len(os.sched_getaffinity(0)) * 2 + 1)
    monkeypatch.setenv("WEB_WORKERS", "7")
    assert load_conf().workers == 7
    monkeypatch.setenv("WEB_WORKERS", "many")
    with pytest.raises(SystemExit, match="WEB_WORKERS: must be an integer, got 'many'"):
        load_conf()


# --- the access log and the response headers, through a real gunicorn --------------------------------


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[tuple[int, str, Path]]:
    """A migrated database, a superuser `ops` with an API token, and gunicorn serving them: (port, token, log)."""
    access_log = tmp_path / "access.log"
    with gunicorn_portal(tmp_path, access_log=access_log) as running:
        yield running.port, running.token, access_log


def send(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers or {})
    except OSError:
        return 0, {}
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}


def access_lines(log: Path, marker: str) -> list[str]:
    wait_for(lambda: log.exists() and marker in log.read_text(), timeout=10)
    return [line for line in log.read_text().splitlines() if marker in line]


@pytest.mark.system
def test_it_logs_the_user_the_portal_authenticated_never_a_basic_auth_claim(portal) -> None:
    port, token, log = portal
    claim = "Basic " + base64.b64encode(b"admin:x").decode()
    status, _ = send(port, "POST", "/health/recover?refused", {"Authorization": claim})
    assert status == 401
    (refused,) = access_lines(log, "/health/recover?refused")
    assert " admin " not in refused
    assert refused.split(" ")[2] == "-", refused
    status, _ = send(port, "POST", "/health/recover?token", {"Authorization": f"Bearer {token}"})
    assert status == 200
    (accepted,) = access_lines(log, "/health/recover?token")
    assert accepted.split(" ")[2] == "ops", accepted
    send(port, "GET", "/health/live?anonymous")
    (anonymous,) = access_lines(log, "/health/live?anonymous")
    assert anonymous.split(" ")[2] == "-", anonymous


@pytest.mark.system
def test_it_sends_no_server_header(portal) -> None:
    port, _, _ = portal
    for path in ("/health/live", "/no-such-page"):
        status, headers = send(port, "GET", path)
        assert status in (200, 404)
        assert "server" not in headers, headers


def test_it_reads_the_environ_key_the_middleware_sets() -> None:
    assert load_conf().ACCESS_LOG_USER == ACCESS_LOG_USER


@pytest.mark.system
def test_it_creates_the_var_dir_database_and_logs_owner_only_under_umask_022(tmp_path: Path) -> None:
    # gunicorn's master never imports the settings: each worker sets the owner-only umask itself.
    port = free_port()
    var, logs = tmp_path / "var", tmp_path / "logs"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "OPSPORTAL_VAR_DIR": str(var),
        "LOG_DIR": str(logs),
        "DATABASE_URL": f"sqlite:///{var / 'opsportal.sqlite3'}",
        "REDIS_URL": "",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "1",
    }
    proc = subprocess.Popen(
        [GUNICORN, "opsportal.wsgi", "-c", "gunicorn.conf.py"],
        cwd=BASE_DIR,
        env=env,
        umask=0o022,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: send(port, "GET", "/health/live")[0] == 200, timeout=30)
        send(port, "GET", "/health/ready")  # the first database connection creates the SQLite file
        modes = modes_of(var, logs, *var.iterdir())
        assert "opsportal.sqlite3" in modes, modes
        expected = {name: "0o700" if mode.startswith("d") else "0o600" for name, mode in modes.items()}
        assert {name: mode[1:] for name, mode in modes.items()} == expected
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)


def modes_of(*paths: Path) -> dict[str, str]:
    """Each path's mode, prefixed "d" for a directory; a file gone meanwhile (SQLite drops its -wal and -shm when
    the last connection closes) is left out rather than failing the stat."""
    modes: dict[str, str] = {}
    for path in paths:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        modes[path.name] = ("d" if stat.S_ISDIR(st.st_mode) else "f") + oct(st.st_mode & 0o777)
    return modes
