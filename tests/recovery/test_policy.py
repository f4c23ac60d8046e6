from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from dispatch import rounds
from health.models import Event, Incident, Service
from recovery.engine import recover_services
from recovery.models import RecoveryAttempt, RecoveryState
from recovery.policy import backoff_wait
from tests.recovery.conftest import PY


def counting_argv(path: Path) -> list[str]:
    """A command action that does not fix anything, but leaves a line per run."""
    return [PY, "-c", "import sys; open(sys.argv[1], 'a').write('ran\\n')", str(path)]


def runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def broken(http_server, make_service, add_action, tmp_path):
    """A critical service whose target stays broken, with an action that never fixes it."""
    from tests.servers import Reply

    http_server.reply = Reply(503, "broken")
    svc = make_service(url=http_server.url, failure_threshold=2)
    log = tmp_path / "runs.log"
    action = add_action(svc, "command", {"argv": counting_argv(log)})
    return svc, action, log


def test_it_doubles_the_wait_per_failure_up_to_the_cap_but_never_below_the_cooldown():
    assert [backoff_wait(300, f, cap=3600) for f in range(6)] == [300, 600, 1200, 2400, 3600, 3600]
    assert backoff_wait(7200, 3, cap=3600) == 7200
    assert backoff_wait(0, 5, cap=3600) == 0
    assert backoff_wait(300, 10_000, cap=3600) == 3600


@pytest.mark.django_db
def test_it_holds_the_cooldown_then_backs_off_and_caps(broken, settings):
    svc, action, log = broken
    action.escalate_after = 100
    action.save()
    settings.RECOVERY_BACKOFF_CAP = 1000
    waits = []
    with time_machine.travel(timezone.now(), tick=True) as clock:
        for _ in range(4):
            (ran,) = recover_services([svc.name], trigger="manual")
            assert ran["outcome"] == "failed"
            (held,) = recover_services([svc.name], trigger="manual")
            assert held["outcome"] == "skipped_cooldown" and "cooldown" in held["reason"]
            state = RecoveryState.objects.get(service=svc)
            waits.append(round((state.next_allowed_at - state.last_finished_at).total_seconds()))
            clock.shift(timedelta(seconds=waits[-1] + 1))
    assert waits == [600, 1000, 1000, 1000]
    assert runs(log) == 4
    assert RecoveryAttempt.objects.filter(outcome="skipped_cooldown").count() == 4


@pytest.mark.django_db
def test_it_lets_force_bypass_the_cooldown(broken):
    svc, _, log = broken
    recover_services([svc.name], trigger="manual")
    (forced,) = recover_services([svc.name], trigger="api", force=True)
    assert forced["outcome"] == "failed" and runs(log) == 2


@pytest.mark.slow("five recovery rounds through backoff")
@pytest.mark.django_db
def test_it_escalates_after_3_failures_then_leaves_the_service_alone_until_acknowledged(broken, django_user_model):
    svc, action, log = broken
    action.cooldown = 0
    action.save()
    for _ in range(5):
        rounds.run(list(Service.objects.filter(pk=svc.pk)))

    assert runs(log) == 3
    outcomes = list(RecoveryAttempt.objects.order_by("started_at", "pk").values_list("outcome", flat=True))
    # Two further rounds, one skip row: automatic skips are recorded once per streak.
    assert outcomes == ["failed", "failed", "failed", "skipped_escalated"]
    incident = Incident.objects.get(service=svc, resolved_at__isnull=True)
    assert incident.severity == "escalated"
    assert Event.objects.filter(kind=Event.Kind.RECOVERY_ESCALATED, service=svc).count() == 1
    assert Event.objects.filter(kind=Event.Kind.RECOVERY_FAILED, service=svc).count() == 3
    (manual,) = recover_services([svc.name], trigger="manual")
    assert manual["outcome"] == "skipped_escalated" and runs(log) == 3

    user = django_user_model.objects.create_user("oncall", password=None, is_staff=True)
    assert incident.acknowledge(user)
    rounds.run(list(Service.objects.filter(pk=svc.pk)))
    assert runs(log) == 4
    assert RecoveryState.objects.get(service=svc).consecutive_failures == 1


@pytest.mark.django_db
def test_it_lets_force_bypass_escalation(broken):
    svc, action, log = broken
    action.cooldown = 0
    action.escalate_after = 1
    action.save()
    recover_services([svc.name], trigger="manual")
    assert RecoveryState.objects.get(service=svc).escalated_at is not None
    (forced,) = recover_services([svc.name], trigger="manual", force=True)
    assert forced["outcome"] == "failed" and runs(log) == 2
    # Still escalated: one notification, not one per forced attempt.
    assert Event.objects.filter(kind=Event.Kind.RECOVERY_ESCALATED).count() == 1


@pytest.mark.django_db
def test_it_lifts_escalation_when_healthy_and_resets_counters_only_after_staying_healthy(broken, http_server):
    from tests.servers import Reply

    svc, action, log = broken
    action.cooldown = 0
    action.escalate_after = 2
    action.save()
    with time_machine.travel(timezone.now(), tick=True) as clock:
        for _ in range(2):
            recover_services([svc.name], trigger="manual")
        state = RecoveryState.objects.get(service=svc)
        assert state.consecutive_failures == 2 and state.escalated_at is not None

        http_server.reply = Reply(200, "ok")
        rounds.run(list(Service.objects.filter(pk=svc.pk)))
        state.refresh_from_db()
        assert state.escalated_at is None  # healthy again lifts the stop at once ...
        assert state.consecutive_failures == 2  # ... but the counters are sticky

        clock.shift(timedelta(seconds=300))
        rounds.run(list(Service.objects.filter(pk=svc.pk)))
        state.refresh_from_db()
        assert state.consecutive_failures == 2

        clock.shift(timedelta(seconds=301))
        rounds.run(list(Service.objects.filter(pk=svc.pk)))
        state.refresh_from_db()
        assert state.consecutive_failures == 0


@pytest.mark.django_db
def test_it_caps_automatic_attempts_per_hour_in_all(http_server, make_service, add_action, settings, tmp_path):
    from tests.servers import Reply

    settings.RECOVERY_MAX_AUTO_PER_HOUR = 2
    http_server.reply = Reply(503, "broken")
    log = tmp_path / "runs.log"
    for name in ("a", "b", "c"):
        add_action(make_service(name, url=http_server.url), "command", {"argv": counting_argv(log)})

    results = rounds.run(list(Service.objects.order_by("name"))).recovery

    assert [r["outcome"] for r in results] == ["failed", "failed", "skipped_cooldown"]
    assert "global cap" in results[2]["reason"]
    assert runs(log) == 2
    # Manual recovery is a person's decision and not limited by the automatic cap.
    (manual,) = recover_services(["c"], trigger="manual")
    assert manual["outcome"] == "failed" and runs(log) == 3


@pytest.mark.django_db
def test_it_lifts_escalation_for_a_manual_request_once_the_service_is_healthy(broken, http_server, settings):
    from tests.servers import Reply

    svc, action, log = broken
    action.cooldown = 0
    action.escalate_after = 1
    action.save()
    recover_services([svc.name], trigger="manual")
    assert RecoveryState.objects.get(service=svc).escalated_at is not None
    settings.AUTO_RECOVERY_ENABLED = False  # no round lifts it for us
    http_server.reply = Reply(200, "ok")
    rounds.run(list(Service.objects.filter(pk=svc.pk)))

    (result,) = recover_services([svc.name], trigger="manual")

    assert result["outcome"] == "succeeded" and runs(log) == 2
    assert RecoveryState.objects.get(service=svc).escalated_at is None
