from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from core.procs import ProcRef
from health.models import Service
from recovery.actions.restart_process import RestartProcessAction
from recovery.engine import recover_services
from recovery.models import RecoveryAttempt
from tests.api.api_support import bearer, staff_token
from tests.core.other_portal import OtherPortal, other_portal_fixture, status
from tests.core.procs_decoys import PRINT_ENV_TO_FILE, Spawned, running
from tests.recovery.conftest import PY
from tests.servers import wait_for


def sleeper_argv(marker: str) -> list[str]:
    return [PY, "-c", "import time; time.sleep(10**6)", marker]


def start(argv: list[str], spawned: list[psutil.Process]) -> psutil.Process:
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    proc = psutil.Process(child.pid)
    spawned.append(proc)
    return proc


@pytest.fixture
def marker() -> str:
    return f"opsportal-test-worker-{uuid.uuid4().hex[:10]}"


def process_service(name: str, **settings: str) -> Service:
    return Service.objects.create(name=name, kind="process", settings=settings, timeout=2, failure_threshold=1)


@pytest.mark.django_db
def test_it_kills_the_old_process_and_starts_a_new_one_that_stays_up(add_action, spawned, marker, tmp_path):
    old = start(sleeper_argv(marker), spawned)
    old_ref = ProcRef.of(old)
    svc = process_service("worker", cmdline_contains=marker)
    log_file = tmp_path / "logs" / "worker.log"
    add_action(svc, "restart_process", {"argv": sleeper_argv(marker), "log_file": str(log_file), "settle_seconds": 0.3})

    (result,) = recover_services(["worker"], trigger="manual")

    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    started = attempt.action_data["started"]
    new_ref = ProcRef(started["pid"], started["createTime"])
    spawned.append(psutil.Process(new_ref.pid))
    assert result["outcome"] == "succeeded", attempt.action_detail
    assert new_ref.alive()
    assert not old_ref.alive()
    assert new_ref.pid != old_ref.pid
    assert attempt.action_data["stopped"] == [{"pid": old_ref.pid, "createTime": old_ref.create_time}]
    assert f"stopped {old_ref.pid}; started pid {new_ref.pid}" == attempt.action_detail
    assert log_file.exists()  # output goes to the log file, in its own session
    assert os.getsid(new_ref.pid) == new_ref.pid


@pytest.mark.django_db
def test_it_fails_when_the_new_process_dies_within_the_settle_time(add_action, marker):
    svc = process_service("worker", cmdline_contains=marker)
    add_action(svc, "restart_process", {"argv": [PY, "-c", "raise SystemExit(1)", marker], "settle_seconds": 0.5})

    (result,) = recover_services(["worker"], trigger="manual")

    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    assert result["outcome"] == "failed"
    assert attempt.action_ok is False and "exited within 0.5 s" in attempt.action_detail
    assert "none running" in attempt.action_detail


@pytest.mark.django_db
def test_it_never_signals_a_process_that_reused_the_pid_in_a_stale_pid_file(add_action, spawned, marker, tmp_path):
    victim = start(sleeper_argv("innocent-" + marker), spawned)
    pid_file = tmp_path / "worker.pid"
    pid_file.write_text(f"{victim.pid}\n")
    hour_ago = time.time() - 3600
    os.utime(pid_file, (hour_ago, hour_ago))  # the file predates the process now holding that pid
    svc = process_service("worker", pid_file=str(pid_file))
    add_action(svc, "restart_process", {"argv": sleeper_argv(marker), "settle_seconds": 0.2})

    (result,) = recover_services(["worker"], trigger="manual")

    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    new_pid = attempt.action_data["started"]["pid"]
    spawned.append(psutil.Process(new_pid))
    assert victim.is_running() and victim.status() != psutil.STATUS_ZOMBIE
    assert attempt.action_data["stopped"] == []
    assert pid_file.read_text().strip() == str(new_pid)  # the probe finds the new process
    assert result["outcome"] == "succeeded"


@pytest.mark.django_db
def test_it_refuses_a_service_that_is_not_a_process_service(add_action, make_service):
    svc = make_service()
    add_action(svc, "restart_process", {"argv": ["true"]})
    (result,) = recover_services(["web"], trigger="manual")
    assert result["outcome"] == "failed"
    assert "needs a service of kind process" in RecoveryAttempt.objects.get().action_detail


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("match", "reason"),
    [
        ({"process_name": "worker", "exe": "bin/worker"}, "exe: must be an absolute path"),
        ({"cmdline_contains": "worker 'x"}, "cmdline_contains: cannot be split into argv elements"),
    ],
)
def test_it_names_the_real_config_error_of_the_match(add_action, match, reason):
    # A process service whose match the probe's rules refuse: the attempt says which key and why.
    svc = process_service("worker", **match)
    add_action(svc, "restart_process", {"argv": ["true"]})
    (result,) = recover_services(["worker"], trigger="manual")
    assert result["outcome"] == "failed"
    detail = RecoveryAttempt.objects.get().action_detail
    assert reason in detail
    assert "needs a service of kind process" not in detail


@pytest.mark.slow("waits out the action timeout on a real worker")
def test_it_stays_within_the_action_timeout_when_stop_grace_and_settle_are_longer(spawned, marker, tmp_path):
    # The old process ignores SIGTERM, so only the SIGKILL after the (cut) grace stops it.
    ready = tmp_path / "ready"
    stubborn = "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    stubborn += "pathlib.Path(sys.argv[1]).touch(); time.sleep(10**6)"
    old = start([PY, "-c", stubborn, str(ready), marker], spawned)
    assert wait_for(ready.exists, timeout=10)
    old_ref = ProcRef.of(old)
    svc = Service(name="worker", kind="process", settings={"cmdline_contains": marker})
    settings = {"argv": sleeper_argv(marker), "stop_grace": 30, "settle_seconds": 30}
    action = RestartProcessAction(settings, service=svc, timeout=2)

    started = time.monotonic()
    result = action.run()
    elapsed = time.monotonic() - started

    new_ref = ProcRef(result.data["started"]["pid"], result.data["started"]["createTime"])
    spawned.append(psutil.Process(new_ref.pid))
    assert elapsed < 8  # the 2 s timeout plus slack, not 30 s of grace and 30 s of settle
    assert not old_ref.alive()
    assert new_ref.alive()
    assert result.ok is True
    assert result.detail.startswith(f"stopped {old_ref.pid}; started pid {new_ref.pid} (up after ")
    assert result.detail.endswith("the 2 s action timeout cut the 30 s settle short)")


def test_the_spawned_fixture_cleans_up(spawned, marker):
    # Guard for the cleanup the other tests rely on: a process started here is gone after the fixture.
    proc = start(sleeper_argv(marker), spawned)
    assert wait_for(proc.is_running, timeout=2)


@pytest.fixture
def decoyed() -> Iterator[Spawned]:
    s = Spawned()
    yield s
    s.cleanup()


def attempt_of(result: dict) -> RecoveryAttempt:
    return RecoveryAttempt.objects.get(pk=result["attempt"])


@pytest.mark.django_db
def test_the_operator_s_tail_and_pgrep_loop_survive_a_recovery(add_action, decoyed, marker, tmp_path):
    old = decoyed.worker(marker)
    tail, loop = decoyed.decoys(marker, tmp_path)
    svc = process_service("worker", cmdline_contains=marker)
    add_action(svc, "restart_process", {"argv": sleeper_argv(marker), "settle_seconds": 0.3})

    (result,) = recover_services(["worker"], trigger="manual")

    attempt = attempt_of(result)
    decoyed.track(attempt.action_data["started"]["pid"])
    assert result["outcome"] == "succeeded", attempt.action_detail
    assert [s["pid"] for s in attempt.action_data["stopped"]] == [old.pid]
    assert not running(old)
    assert running(tail) and running(loop)


@pytest.mark.django_db
def test_it_refuses_to_stop_more_than_max_matches_and_records_what_it_would_have_stopped(add_action, decoyed, marker):
    first, second = decoyed.worker(marker), decoyed.worker(marker)
    svc = process_service("pool", cmdline_contains=marker)
    action = add_action(svc, "restart_process", {"argv": sleeper_argv(marker), "settle_seconds": 0.2})

    (result,) = recover_services(["pool"], trigger="manual")

    attempt = attempt_of(result)
    assert result["outcome"] == "failed"
    assert running(first) and running(second)
    assert "started" not in attempt.action_data  # nothing stopped, nothing started
    would = attempt.action_data["wouldStop"]
    assert sorted(w["pid"] for w in would) == sorted([first.pid, second.pid])
    assert all(marker in w["cmdline"] for w in would)
    assert attempt.action_detail.startswith(f"refused: 2 processes match cmdline contains {marker!r} (max_matches 1)")
    assert f"pid {first.pid}" in attempt.action_detail and f"pid {second.pid}" in attempt.action_detail

    # A pool says so: both are stopped, one new process started.
    action.settings = {**action.settings, "max_matches": 2}
    action.save()
    (again,) = recover_services(["pool"], trigger="manual", force=True)
    attempt = attempt_of(again)
    decoyed.track(attempt.action_data["started"]["pid"])
    assert again["outcome"] == "succeeded", attempt.action_detail
    assert not running(first) and not running(second)


@pytest.mark.slow("starts and stops real worker processes")
@pytest.mark.django_db
def test_it_stops_the_process_it_started_last_not_a_second_match(add_action, decoyed, marker):
    svc = process_service("worker", cmdline_contains=marker)
    add_action(svc, "restart_process", {"argv": sleeper_argv(marker), "settle_seconds": 0.2})
    (first,) = recover_services(["worker"], trigger="manual")
    ours = decoyed.track(attempt_of(first).action_data["started"]["pid"])
    by_hand = decoyed.worker(marker)  # an operator started another copy: two match now

    (second,) = recover_services(["worker"], trigger="manual", force=True)

    attempt = attempt_of(second)
    decoyed.track(attempt.action_data["started"]["pid"])
    assert second["outcome"] == "succeeded", attempt.action_detail
    assert [s["pid"] for s in attempt.action_data["stopped"]] == [ours.pid]
    assert not running(ours) and running(by_hand)


@pytest.mark.system
@pytest.mark.django_db
def test_a_match_on_the_portal_s_own_cluster_never_stops_it(add_action, decoyed, marker, tmp_path):
    main, worker, service = decoyed.fake_portal(marker, tmp_path)
    svc = process_service("cluster", cmdline_contains=f"manage.py qcluster {marker}")
    add_action(svc, "restart_process", {"argv": sleeper_argv(marker), "settle_seconds": 0.2, "max_matches": 10})

    (result,) = recover_services(["cluster"], trigger="manual")

    attempt = attempt_of(result)
    decoyed.track(attempt.action_data["started"]["pid"])
    assert attempt.action_data["stopped"] == []
    assert running(main) and running(worker) and running(service)


def test_it_starts_the_process_with_a_minimal_environment_and_env_passthrough(monkeypatch, decoyed, tmp_path):
    monkeypatch.setenv("OTHER_SERVICE_SECRET", "other-service-secret-value")
    monkeypatch.setenv("WORKER_QUEUE", "high")
    out = tmp_path / "env.json"
    svc = Service(name="worker", kind="process", settings={"cmdline_contains": str(out)})
    settings = {
        "argv": [PY, "-c", PRINT_ENV_TO_FILE, str(out)],
        "settle_seconds": 0,
        "env_passthrough": ["WORKER_QUEUE"],
    }
    result = RestartProcessAction(settings, service=svc, timeout=5).run()
    decoyed.track(result.data["started"]["pid"])
    assert wait_for(lambda: out.exists() and out.read_text().endswith("}"), timeout=10)
    seen = json.loads(out.read_text())
    assert "OTHER_SERVICE_SECRET" not in seen and seen["PATH"] and seen["WORKER_QUEUE"] == "high"


# The demo worker's recovery (examples/demo.toml): stop_grace 5 (the default), settle 1 s, verify 1 s.
DEMO_LIKE = {"settle_seconds": 1}
# Stop + settle + verify + the evidence kept before the stop (bounded by evidence_timeout, 2 s), with room for
# a loaded machine; waiting on a zombie took 5 + 5 s more.
FORCED_RESTART_BOUND = 8.0


@pytest.fixture
def other_portal(tmp_path: Path) -> Iterator[OtherPortal]:
    yield from other_portal_fixture(tmp_path)


@pytest.mark.slow("waits out a real worker's stop grace and settle time")
@pytest.mark.django_db
def test_a_forced_recovery_of_a_worker_started_earlier_by_this_process_takes_its_stop_and_settle_time(
    add_action, decoyed, marker
):
    svc = process_service("worker", cmdline_contains=marker)
    add_action(svc, "restart_process", {"argv": sleeper_argv(marker), **DEMO_LIKE}, verify_delay=1, timeout=60)
    (first,) = recover_services(["worker"], trigger="manual")
    ours = decoyed.track(attempt_of(first).action_data["started"]["pid"])
    assert first["outcome"] == "succeeded", attempt_of(first).action_detail

    started = time.monotonic()
    (second,) = recover_services(["worker"], trigger="manual", force=True)
    elapsed = time.monotonic() - started

    attempt = attempt_of(second)
    decoyed.track(attempt.action_data["started"]["pid"])
    assert second["outcome"] == "succeeded", attempt.action_detail
    assert [s["pid"] for s in attempt.action_data["stopped"]] == [ours.pid]
    assert elapsed < FORCED_RESTART_BOUND, f"forced recovery took {elapsed:.1f} s"
    assert wait_for(lambda: status(ours.pid) == "gone", timeout=1.0), status(ours.pid)  # reaped, no zombie


@pytest.mark.slow("real worker processes started by another process, stopped through the API")
@pytest.mark.django_db
def test_a_forced_recovery_through_the_api_of_a_worker_another_portal_process_started_never_waits_on_a_zombie(
    client, add_action, decoyed, marker, other_portal
):
    # A gunicorn worker restarted the service earlier; this request lands on another worker (this process).
    ref = other_portal.start_detached(sleeper_argv(marker))
    svc = process_service("worker", cmdline_contains=marker)
    add_action(svc, "restart_process", {"argv": sleeper_argv(marker), **DEMO_LIKE}, verify_delay=1, timeout=60)
    _, token = staff_token()

    started = time.monotonic()
    response = client.generic(
        "POST",
        "/health/recover",
        json.dumps({"services": ["worker"], "force": True}).encode(),
        content_type="application/json",
        **bearer(token),
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.content
    (result,) = response.json()["results"]
    attempt = attempt_of(result)
    decoyed.track(attempt.action_data["started"]["pid"])
    assert result["outcome"] == "succeeded", attempt.action_detail
    assert [s["pid"] for s in attempt.action_data["stopped"]] == [ref.pid]
    assert elapsed < FORCED_RESTART_BOUND, f"forced recovery took {elapsed:.1f} s"
    assert wait_for(lambda: status(ref.pid) == "gone", timeout=1.0), status(ref.pid)  # its parent reaped it
