"""Issue 15 item 5: an action's process group is recorded with its attempt; a takeover of a dead owner kills
what is left of it and abandons the attempt with that reason; an action never outlives its timeout by more than
its grace, even when the process that enforced it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from django.db import connections
from django.utils import timezone

from core import db
from core.models import SchedulerHeartbeat
from core.procs import SUPERVISOR, SUPERVISOR_GRACE_SECONDS
from recovery.engine import recover_services
from recovery.models import RecoveryAttempt, RecoveryState
from recovery.owner import OWNER_PREFIX
from tests.recovery.conftest import PY, touch_argv
from tests.servers import wait_for

Outcome = RecoveryAttempt.Outcome


@pytest.fixture(autouse=True)
def _no_recent_db_error():
    """Another test's outage must not hold back this file's heartbeat takeovers (core.db is process-wide)."""
    db.last_transient_at = None


BASE_DIR = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow("waits out an action's timeout after killing its runner")
@pytest.mark.skipif(SUPERVISOR is None, reason="needs coreutils `timeout` (Linux)")
def test_it_never_lets_a_child_outlive_its_timeout_when_the_runner_is_killed(tmp_path):
    # The runner (standing in for a qcluster) starts `sleep 600` with a 2 s timeout and is SIGKILLed at once:
    # before the fix the sleep ran on under PID 1 until its end.
    pid_file = tmp_path / "pid"
    code = (
        "import sys; from core.procs import run_argv; "
        "run_argv(['sh', '-c', 'echo $$ > ' + sys.argv[1] + '; exec sleep 600'], 2)"
    )
    runner = subprocess.Popen([sys.executable, "-c", code, str(pid_file)], cwd=BASE_DIR)
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=20)
    sleeper = int(pid_file.read_text())
    started = time.monotonic()
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    try:
        assert psutil.Process(sleeper).is_running()  # orphaned, still running right after the kill
        assert wait_for(lambda: _gone(sleeper), timeout=2 + SUPERVISOR_GRACE_SECONDS + 3, interval=0.1)
        assert time.monotonic() - started <= 2 + SUPERVISOR_GRACE_SECONDS + 3
    finally:
        if not _gone(sleeper):
            os.kill(sleeper, signal.SIGKILL)


@pytest.mark.slow("a real action process group, watched while it runs")
@pytest.mark.django_db(transaction=True)
def test_it_records_the_actions_process_group_with_the_attempt_while_it_runs(
    flag_target, make_service, add_action, tmp_path
):
    server, flag = flag_target
    pid_file = tmp_path / "pid"
    svc = make_service(url=server.url)
    script = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpgid(0))); time.sleep(3)"
    add_action(svc, "command", {"argv": [PY, "-c", script, str(pid_file)]})
    errors: list = []

    def run() -> None:
        try:
            recover_services(["web"], trigger="api")
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=20)
        group = int(pid_file.read_text())

        def recorded() -> dict | None:
            row = RecoveryAttempt.objects.filter(outcome=Outcome.IN_PROGRESS).first()
            return (row.action_data or {}).get("process") if row else None

        assert wait_for(recorded, timeout=5)
        info = recorded()
        assert info["pid"] == group  # the group leader: the supervisor, or the command itself
        assert info["host"] == socket.gethostname()[:32]
        assert abs(info["createTime"] - psutil.Process(group).create_time()) < 0.01
        assert info["killBy"] > time.time()
        (running,) = RecoveryAttempt.objects.filter(outcome=Outcome.IN_PROGRESS)
        assert running.owner and RecoveryState.objects.get(service=svc).claimed_by == running.owner
        assert SchedulerHeartbeat.objects.filter(name=OWNER_PREFIX + running.owner).exists()
    finally:
        thread.join(30)
    assert errors == []
    done = RecoveryAttempt.objects.get(service=svc)
    assert done.outcome == Outcome.FAILED and done.action_data["process"]["pid"] == group  # kept in the history
    assert not SchedulerHeartbeat.objects.filter(name__startswith=OWNER_PREFIX).exists()  # its row is gone


def _dead_attempt(svc, info: dict) -> RecoveryAttempt:
    started = timezone.now() - timedelta(seconds=30)
    owner = "otherhost:4242:dead"
    attempt = RecoveryAttempt.objects.create(
        service=svc,
        trigger="auto",
        action_kind="command",
        started_at=started,
        owner=owner,
        action_data={"process": info},
    )
    RecoveryState.objects.create(
        service=svc, running_since=started, claim_token="t0ken", claimed_by=owner, next_allowed_at=started
    )
    SchedulerHeartbeat.objects.create(name=OWNER_PREFIX + owner, last_run_at=started)
    return attempt


@pytest.mark.django_db
def test_it_kills_a_dead_owners_orphaned_group_and_abandons_its_attempt(make_service, add_action, flag_target):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    orphan = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        info = {
            "pid": orphan.pid,
            "createTime": psutil.Process(orphan.pid).create_time(),
            "host": socket.gethostname()[:32],
            "killBy": time.time() + 600,
            "supervised": True,
        }
        dead = _dead_attempt(svc, info)

        (result,) = recover_services(["web"], trigger="api", force=True)

        assert orphan.wait(5) == -signal.SIGKILL
        assert result["success"] is True  # the service was recovered again at once
        dead.refresh_from_db()
        assert dead.outcome == Outcome.ABANDONED
        assert "stopped beating" in dead.detail and f"killed its orphaned action (process group {orphan.pid})" in (
            dead.detail
        )
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


@pytest.mark.django_db
def test_it_never_kills_a_reused_pid(make_service, add_action, flag_target):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        info = {"pid": bystander.pid, "createTime": 1.0, "host": socket.gethostname()[:32], "killBy": 0}
        dead = _dead_attempt(svc, info)
        (result,) = recover_services(["web"], trigger="api", force=True)
        assert result["success"] is True
        assert bystander.poll() is None  # same pid, another create time: not the action's
        dead.refresh_from_db()
        assert dead.outcome == Outcome.ABANDONED and "had already ended" in dead.detail
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.django_db
def test_it_holds_the_claim_until_the_supervisor_on_another_host_has_ended_the_action(
    make_service, add_action, flag_target
):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    info = {"pid": 4321, "createTime": 1.0, "host": "elsewhere", "killBy": time.time() + 60, "supervised": True}
    dead = _dead_attempt(svc, info)

    (held,) = recover_services(["web"], trigger="api", force=True)
    assert held["outcome"] == Outcome.SKIPPED_BUSY and not flag.exists()  # it may still run there
    dead.refresh_from_db()
    assert dead.outcome == Outcome.IN_PROGRESS

    RecoveryAttempt.objects.filter(pk=dead.pk).update(action_data={"process": {**info, "killBy": time.time() - 1}})
    (result,) = recover_services(["web"], trigger="api", force=True)
    assert result["success"] is True
    dead.refresh_from_db()
    assert dead.outcome == Outcome.ABANDONED and "ran on elsewhere" in dead.detail
