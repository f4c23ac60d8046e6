"""A repair the service does not survive is a failed repair; no service uses up the global cap (issue 15 item 6).

A "crash loop": each restart is verified up, and the service dies again seconds later. Counted as a
success every time, it never backed off or escalated and used up RECOVERY_MAX_AUTO_PER_HOUR while
another critical service waited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from dispatch import rounds
from health.models import Event, Incident, Service
from recovery import policy
from recovery.models import RecoveryAction, RecoveryAttempt, RecoveryState
from tests.recovery.conftest import PY, touch_argv
from tests.servers import Reply

ROOT = Path(__file__).resolve().parents[2]
Outcome = RecoveryAttempt.Outcome


def round_of(*services: Service) -> list[dict]:
    return rounds.run(list(Service.objects.filter(pk__in=[s.pk for s in services]).order_by("name"))).recovery


def attempts(service: Service) -> list[RecoveryAttempt]:
    ran = RecoveryAttempt.objects.filter(service=service).exclude(outcome__startswith="skipped_")
    return list(ran.order_by("started_at", "pk"))


@pytest.fixture
def flags(http_server, tmp_path):
    """/NAME answers 200 while tmp_path/NAME exists (the action creates it; the test's "crash" removes it)."""

    def answer(request):
        return Reply(200, "ok") if (tmp_path / request["path"].strip("/")).exists() else Reply(503, "crashed")

    http_server.handler = answer
    return http_server, tmp_path


def looping(make_service, add_action, flags, name: str, **action):
    server, root = flags
    svc = make_service(name, url=f"{server.url}/{name}", critical=True)
    add_action(svc, "command", {"argv": touch_argv(root / name)}, **action)
    return svc, root / name


@pytest.mark.slow("recovery attempts through backoff to escalation")
@pytest.mark.django_db
def test_it_backs_off_and_escalates_a_repair_loop(make_service, add_action, flags, settings):
    settings.RECOVERY_RESET_AFTER = 600
    svc, flag = looping(make_service, add_action, flags, "web", cooldown=60, escalate_after=3)
    waits = []
    with time_machine.travel(timezone.now(), tick=True) as clock:
        for _ in range(3):
            (repair,) = round_of(svc)
            assert repair["outcome"] == "succeeded" and flag.exists()  # verified up ...
            flag.unlink()  # ... and dead again 8 s later
            clock.shift(timedelta(seconds=8))
            (held,) = round_of(svc)
            state = RecoveryState.objects.get(service=svc)
            if state.escalated_at:
                break
            assert held["outcome"] == "skipped_cooldown"
            waits.append(round((state.next_allowed_at - state.last_finished_at).total_seconds()))
            clock.shift(timedelta(seconds=waits[-1] + 1))
        assert waits == [120, 240]  # the cooldown doubles per loop, as for any failed repair
        assert held["outcome"] == "skipped_escalated"
        assert state.consecutive_failures == 3
        clock.shift(timedelta(hours=2))
        (still,) = round_of(svc)
    assert still["outcome"] == "skipped_escalated" and not flag.exists()  # left alone until a person acks
    loops = attempts(svc)
    assert [a.outcome for a in loops] == ["succeeded"] * 3  # history keeps what each attempt saw ...
    assert all(a.action_data["repair_loop"] is True for a in loops)  # ... and marks the loop
    assert all(7 <= a.action_data["failed_again_after"] <= 12 for a in loops)
    assert all(a.detail.startswith("fixed: ") and "did not hold: down again" in a.detail for a in loops)
    assert Event.objects.filter(kind=Event.Kind.RECOVERY_ESCALATED, service=svc).count() == 1
    assert Incident.objects.get(service=svc, resolved_at__isnull=True).severity == "escalated"
    titles = list(Event.objects.filter(kind=Event.Kind.RECOVERY_FAILED).values_list("title", flat=True))
    assert len(titles) == 3 and all("did not hold" in t for t in titles)


@pytest.mark.django_db
def test_it_does_not_count_a_repair_that_held_for_reset_after(make_service, add_action, flags, settings):
    settings.RECOVERY_RESET_AFTER = 600
    svc, flag = looping(make_service, add_action, flags, "web", cooldown=60)
    with time_machine.travel(timezone.now(), tick=True) as clock:
        (repair,) = round_of(svc)
        assert repair["outcome"] == "succeeded"
        flag.unlink()
        clock.shift(timedelta(seconds=601))
        (again,) = round_of(svc)
    assert again["outcome"] == "succeeded"
    assert RecoveryState.objects.get(service=svc).consecutive_failures == 0
    assert not any(a.action_data.get("repair_loop") for a in attempts(svc))


@pytest.mark.django_db
def test_it_keeps_a_crash_looping_service_from_using_up_the_global_cap(make_service, add_action, flags, settings):
    settings.RECOVERY_MAX_AUTO_PER_HOUR = 4
    settings.RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR = 2
    settings.RECOVERY_RESET_AFTER = 600
    # No cooldown and no escalation in sight: only the caps stop the loop.
    looper, loop_flag = looping(make_service, add_action, flags, "a-looper", cooldown=0, escalate_after=100)
    innocent, innocent_flag = looping(make_service, add_action, flags, "b-innocent", cooldown=0)
    innocent_flag.touch()
    for _ in range(4):
        loop_flag.unlink(missing_ok=True)
        round_of(looper, innocent)
    assert len(attempts(looper)) == 2
    latest = RecoveryAttempt.objects.filter(service=looper).latest("started_at", "pk")
    assert latest.outcome == "skipped_cooldown" and "a-looper" in latest.detail and "per service" in latest.detail

    innocent_flag.unlink()  # the second critical service goes down while the first still loops
    loop_flag.unlink(missing_ok=True)
    results = {r["service"]: r for r in round_of(looper, innocent)}
    assert results["b-innocent"]["outcome"] == "succeeded", results["b-innocent"]["reason"]
    assert results["a-looper"]["outcome"] == "skipped_cooldown"


@pytest.mark.django_db
def test_it_counts_no_crash_before_an_action_ran_toward_the_caps(make_service, add_action, flags, settings):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's integer column cannot hold the cooldown (SQLite stores it)")
    settings.RECOVERY_MAX_AUTO_PER_HOUR = 2
    settings.RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR = 1
    bad = [looping(make_service, add_action, flags, name)[0] for name in ("a-bad", "b-bad")]
    innocent, innocent_flag = looping(make_service, add_action, flags, "c-innocent")
    # Rows stored before the bounds: a cooldown no timedelta holds makes each attempt crash before it ran.
    RecoveryAction.objects.filter(service__in=bad).update(cooldown=9223372036854775807)
    innocent_flag.touch()
    for _ in range(2):
        crashed = {r["service"]: r for r in round_of(*bad, innocent)}
        assert all("internal error: OverflowError" in crashed[s.name]["reason"] for s in bad), crashed
    assert RecoveryAttempt.objects.filter(detail__startswith="internal error", trigger="auto").count() == 4
    assert not policy.global_cap_reached(timezone.now())
    assert not any(policy.service_cap_reached(s, timezone.now()) for s in bad)

    innocent_flag.unlink()  # no action ran for the crashes: the innocent service may still be repaired
    results = {r["service"]: r for r in round_of(*bad, innocent)}
    assert results["c-innocent"]["outcome"] == "succeeded", results["c-innocent"]["reason"]
    assert policy.service_cap_reached(innocent, timezone.now())  # an attempt that ran counts as before


@pytest.mark.django_db
def test_it_still_counts_an_attempt_that_crashed_after_its_action_ran(make_service, add_action):
    svc = make_service("web")
    action = add_action(svc, "command", {"argv": ["true"]})
    now = timezone.now()
    common = {"service": svc, "trigger": "auto", "outcome": "failed", "started_at": now, "finished_at": now}
    RecoveryAttempt.objects.create(**common, detail="internal error: OverflowError at policy.py:30")
    RecoveryAttempt.objects.create(
        **common, action=action, action_kind="command", detail="internal error while recovering: internal error"
    )
    assert policy._auto_attempts(now + timedelta(seconds=1)).count() == 1  # the one whose action ran


def read_caps(**env: str) -> subprocess.CompletedProcess:
    show = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.RECOVERY_MAX_AUTO_PER_HOUR, s.RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR]))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECOVERY_")}
    clean.update(env, DJANGO_SETTINGS_MODULE="opsportal.settings")
    return subprocess.run([sys.executable, "-c", show], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


@pytest.mark.system
def test_it_reads_the_per_service_cap_and_refuses_one_not_below_the_global_cap():
    assert json.loads(read_caps().stdout) == [30, 6]
    assert json.loads(read_caps(RECOVERY_MAX_AUTO_PER_HOUR="6").stdout) == [6, 5]  # below the global one
    assert json.loads(read_caps(RECOVERY_MAX_AUTO_PER_HOUR="1").stdout) == [1, 1]  # the one exception
    assert json.loads(read_caps(RECOVERY_MAX_AUTO_PER_HOUR="0").stdout) == [0, 0]
    assert json.loads(read_caps(RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR="2").stdout) == [30, 2]
    for value in ("8", "6"):
        refused = read_caps(RECOVERY_MAX_AUTO_PER_HOUR="6", RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR=value)
        assert refused.returncode != 0
        assert f"RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR: must be below RECOVERY_MAX_AUTO_PER_HOUR (6), got {value}" in (
            refused.stderr
        )


@pytest.mark.slow("a real process that dies 2 s after each restart, restarted until escalation")
@pytest.mark.django_db
def test_it_escalates_a_real_process_that_dies_two_seconds_after_each_restart(add_action, settings, tmp_path):
    """restart_process starts a worker that is verified running and exits ~1.5 s later, every time."""
    settings.RECOVERY_RESET_AFTER = 30
    marker = f"opsportal-test-crashloop-{uuid.uuid4().hex[:10]}"
    svc = Service.objects.create(
        name="worker", kind="process", settings={"cmdline_contains": marker}, timeout=2, failure_threshold=1
    )
    argv = [PY, "-c", "import time; time.sleep(1.5)", marker]
    add_action(svc, "restart_process", {"argv": argv, "settle_seconds": 0.3}, cooldown=1, escalate_after=3)
    deadline = time.monotonic() + 60
    state = RecoveryState.for_service(svc)
    while time.monotonic() < deadline and state.escalated_at is None:
        round_of(svc)
        state.refresh_from_db()
        time.sleep(0.3)
    for proc in psutil.process_iter(["cmdline"]):
        if marker in (proc.info["cmdline"] or []):
            proc.kill()
    assert state.escalated_at is not None, "a crash-looping worker was never escalated"
    loops = attempts(svc)
    assert len(loops) == 3 and all(a.outcome == Outcome.SUCCEEDED and a.action_data["repair_loop"] for a in loops)
    assert all(0.5 <= a.action_data["failed_again_after"] <= 5 for a in loops)
    # Backoff between the repairs: base cooldown 1 s doubled per loop (2 s, then 4 s).
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in zip(loops, loops[1:], strict=False)]
    assert gaps[0] >= 2 and gaps[1] >= 4 and gaps[1] > gaps[0]
    (after,) = round_of(svc)
    assert after["outcome"] == "skipped_escalated"
    assert len(attempts(svc)) == 3
