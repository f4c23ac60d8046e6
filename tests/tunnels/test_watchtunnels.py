from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from io import StringIO

import psutil
import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from core import procs
from tests.servers import free_port, wait_for
from tests.tunnels.conftest import FAKE, assert_clean
from tunnels.management.commands.watchtunnels import Command
from tunnels.models import Tunnel, TunnelEvent

pytestmark = pytest.mark.django_db
Kind = TunnelEvent.Kind
LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[(DEBUG|INFO|WARNING|ERROR)\] \[edge\] .+$")


def run(*args: str) -> tuple[str, str]:
    out = StringIO()
    summary = call_command("watchtunnels", *args, stdout=out)
    return summary, out.getvalue()


def test_it_checks_each_tunnel_once(make_tunnel):
    fake = make_tunnel()
    summary, out = run("edge", "--once")
    assert summary == "checked 1 tunnel(s): edge up"
    assert re.search(r"edge: up \(PID: \d+\) - restarted \(process not running\)", out)
    assert fake.reload().events.filter(kind=Kind.RESTARTED).count() == 1
    assert_clean(fake)


def test_it_rejects_unknown_or_disabled_names_and_bad_intervals(make_tunnel):
    make_tunnel(name="off", enabled=False)
    with pytest.raises(CommandError, match="unknown tunnel: nope"):
        run("nope", "--once")
    with pytest.raises(CommandError, match="tunnel is disabled: off"):
        run("off", "--once")
    with pytest.raises(CommandError, match="--interval: must be a positive number"):
        run("--interval", "0")
    assert not TunnelEvent.objects.exists()


def test_it_writes_the_old_monitors_log_format_without_flooding(make_tunnel, tmp_path):
    fake = make_tunnel()
    log_file = tmp_path / "custom" / "tunnel.log"
    run("--once", "--log-file", str(log_file))
    lines = log_file.read_text().splitlines()
    assert lines and all(LINE.match(line) for line in lines), lines
    pid = fake.reload().pid
    assert any(line.endswith(f"[INFO] [edge] Tunnel started successfully (PID: {pid})") for line in lines)
    run("--once", "--log-file", str(log_file))  # healthy and unchanged: a row, but no log line
    assert log_file.read_text().splitlines() == lines
    assert fake.reload().events.filter(kind=Kind.CHECK_OK).count() == 1
    assert_clean(fake)


def test_it_logs_to_the_rotating_tunnel_monitor_log_by_default(make_tunnel):
    fake = make_tunnel()
    run("--once")
    text = (settings.LOG_DIR / "tunnel-monitor.log").read_text()
    assert f"[INFO] [edge] Tunnel started successfully (PID: {fake.reload().pid})" in text
    assert_clean(fake)


def test_it_refuses_a_log_file_it_cannot_write(make_tunnel, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    make_tunnel()
    with pytest.raises(CommandError, match="--log-file: cannot write"):
        run("--once", "--log-file", str(blocker / "tunnel.log"))
    assert not TunnelEvent.objects.exists()


def connector_ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.slow("kills a fake connector and waits for the loop to replace it")
def test_it_replaces_a_killed_connector_within_one_interval_in_the_loop(make_tunnel):
    # The loop runs in this thread (the in-memory SQLite test database is not shared with threads);
    # a helper thread that touches only processes and HTTP kills the connector and stops the loop.
    fake = make_tunnel(check_interval=1, startup_timeout=5)
    old = fake.start()
    stop = threading.Event()
    seen: dict[str, float] = {}

    def saboteur() -> None:
        time.sleep(0.3)
        seen["killed"] = time.monotonic()
        os.kill(old, signal.SIGKILL)
        replaced = wait_for(
            lambda: any(p.pid != old for p in fake.processes()) and connector_ready(fake.port), timeout=20
        )
        if replaced:
            seen["ready"] = time.monotonic()
        stop.set()

    helper = threading.Thread(target=saboteur)
    helper.start()
    checks = Command(stdout=StringIO()).loop(["edge"], None, stop)
    helper.join(timeout=30)
    tunnel = fake.reload()
    assert "ready" in seen and checks >= 1
    # Generous bound from the issue: one check interval plus start-up (and slack for a busy machine).
    assert seen["ready"] - seen["killed"] < 1 + 5 + 2
    assert tunnel.pid != old and tunnel.status == Tunnel.Status.UP
    # What the check after the kill found, in order (a check_ok may follow it before the loop stops).
    after = [k for k in tunnel.events.order_by("created_at", "pk").values_list("kind", flat=True) if k != Kind.CHECK_OK]
    assert after[-2:] == [Kind.PROCESS_MISSING, Kind.RESTARTED]
    assert_clean(fake)


@pytest.mark.slow("runs the watch loop for several intervals")
def test_it_loops_at_a_fixed_interval_when_given(make_tunnel):
    fake = make_tunnel()
    fake.start()
    out = StringIO()
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    checks = Command(stdout=out).loop(None, 0.2, stop)
    timer.join()
    assert checks >= 2
    assert fake.reload().events.filter(kind=Kind.CHECK_OK).count() == checks
    assert out.getvalue() == ""  # routine healthy checks print nothing in the loop
    assert_clean(fake)


@pytest.mark.slow("a crash-looping fake connector checked repeatedly")
def test_it_logs_a_suppressed_crash_loop_once_not_on_every_check(make_tunnel, tmp_path):
    fake = make_tunnel("--exit-at-once", max_restarts_per_hour=2, settle_seconds=0.2)
    log_file = tmp_path / "tunnel.log"
    for _ in range(5):
        run("--once", "--log-file", str(log_file))
    text = log_file.read_text()
    assert text.count("[ERROR] [edge] Tunnel restart failed: connector exited") == 2  # within settle, or before ready
    assert text.count("[WARNING] [edge] Max restarts reached") == 1
    assert text.count("Tunnel process not running") == 3  # two attempts and the check that hit the limit
    assert fake.reload().events.filter(kind=Kind.PROCESS_MISSING).count() == 5  # every check still has its row
    assert_clean(fake)


@pytest.mark.system
def test_it_runs_as_a_real_process_replaces_a_killed_connector_and_stops_on_sigterm(tmp_path):
    # The whole path as an operator runs it: manage.py in its own process, a file database,
    # kill -9 of the connector, SIGTERM of the watchdog.
    port = free_port()
    marker = f"{FAKE.name} --port {port} "
    db = tmp_path / "portal.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
        "LOG_DIR": str(tmp_path / "logs"),
    }
    config = tmp_path / "tunnels.toml"
    config.write_text(
        "[[tunnel]]\n"
        'name = "main"\n'
        f'command = ["{sys.executable}", "{FAKE}", "--port", "{port}", "--connections", "2"]\n'
        f'process_match = "{marker}"\n'
        f'ready_url = "http://127.0.0.1:{port}/ready"\n'
        "check_interval = 1\nstartup_timeout = 5\nsettle_seconds = 0.3\n"
    )
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, timeout=120)
    subprocess.run([*manage, "importconfig", str(config)], env=env, check=True, timeout=60, capture_output=True)
    watcher = subprocess.Popen([*manage, "watchtunnels"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def kinds() -> list[str]:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return [k for (k,) in conn.execute("SELECT kind FROM tunnels_tunnelevent ORDER BY id")]

    try:
        # Killed only once the watchdog has verified its start (else that start is a restart_failed).
        assert wait_for(lambda: "restarted" in kinds(), timeout=30)
        (first,) = procs.find_processes(cmdline_contains=marker)
        os.kill(first.pid, signal.SIGKILL)
        assert wait_for(
            lambda: (
                any(p.pid != first.pid for p in procs.find_processes(cmdline_contains=marker)) and connector_ready(port)
            ),
            timeout=20,
        )
        watcher.send_signal(signal.SIGTERM)
        out, _ = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        procs.stop(procs.find_processes(cmdline_contains=marker), grace=3)
    assert watcher.returncode == 0 and b"stopped after" in out
    events = kinds()
    assert events[:2] == ["process_missing", "restarted"] and events.count("restarted") == 2, events
    log = (tmp_path / "logs" / "tunnel-monitor.log").read_text()
    assert log.count("Tunnel started successfully") == 2
    assert procs.find_processes(cmdline_contains=marker) == []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        pids = [p for (p,) in conn.execute("SELECT pid FROM tunnels_tunnelevent WHERE pid IS NOT NULL")]

    def zombie(pid: int) -> bool:
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        return False

    # The last connector outlived the watcher: its new parent (init) reaps it, in its own time.
    assert pids and wait_for(lambda: not any(zombie(p) for p in pids), timeout=10)
