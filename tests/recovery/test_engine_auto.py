from __future__ import annotations

import pytest
from django.core.management import call_command

from dispatch import rounds
from health.models import Incident, ProbeResult, Service
from recovery.models import RecoveryAttempt
from tests.recovery.conftest import touch_argv


@pytest.mark.django_db
def test_it_recovers_a_critical_service_on_soft_down_within_the_round(flag_target, make_service, add_action):
    server, flag = flag_target
    svc = make_service(url=server.url, failure_threshold=3)
    add_action(svc, "command", {"argv": touch_argv(flag)})

    result = rounds.run([svc])

    # The probe found it SOFT down (no incident yet) and the repair ran in the same round;
    # the round reports the state the verified repair left.
    first, verified = ProbeResult.objects.filter(service=svc).order_by("checked_at", "pk")
    assert (first.status, verified.status) == ("down", "up")
    assert not Incident.objects.exists()
    assert result.status == "healthy"
    (attempt,) = result.recovery
    assert attempt["outcome"] == "succeeded" and attempt["service"] == "web"
    assert RecoveryAttempt.objects.get().trigger == "auto"
    assert Service.objects.get(pk=svc.pk).status == "up"


@pytest.mark.django_db
def test_it_recovers_a_non_critical_service_only_when_its_action_says_auto(flag_target, make_service, add_action):
    server, flag = flag_target
    plain = make_service("plain", url=server.url, critical=False)
    add_action(plain, "command", {"argv": touch_argv(flag)})
    opted = make_service("opted", url=server.url, critical=False)
    add_action(opted, "command", {"argv": touch_argv(flag)}, auto=True)

    result = rounds.run([plain, opted])

    assert [r["service"] for r in result.recovery] == ["opted"]
    assert not RecoveryAttempt.objects.filter(service=plain).exists()


@pytest.mark.django_db
def test_it_leaves_a_critical_service_alone_when_its_action_says_auto_false(flag_target, make_service, add_action):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)}, auto=False)
    assert rounds.run([svc]).recovery == []
    assert not flag.exists() and RecoveryAttempt.objects.count() == 0


@pytest.mark.django_db
def test_it_does_nothing_when_disabled_or_asked_not_to(flag_target, make_service, add_action, settings):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    with pytest.raises(SystemExit) as exit_info:
        call_command("runprobes", "web", "--no-recover")
    assert exit_info.value.code == 2
    settings.AUTO_RECOVERY_ENABLED = False
    assert rounds.run([svc]).recovery == []
    assert not flag.exists() and RecoveryAttempt.objects.count() == 0


@pytest.mark.django_db
def test_it_does_nothing_for_a_healthy_round(http_server, make_service, add_action, tmp_path):
    flag = tmp_path / "ran"
    svc = make_service(url=http_server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    result = rounds.run([svc])
    assert result.status == "healthy" and result.recovery == []
    assert not flag.exists()


@pytest.mark.django_db
def test_it_uses_the_next_action_after_a_failure(flag_target, make_service, add_action, tmp_path):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": ["true"]}, cooldown=0)
    add_action(svc, "command", {"argv": touch_argv(flag)}, cooldown=0)

    first = rounds.run([svc]).recovery
    second = rounds.run(list(Service.objects.filter(pk=svc.pk))).recovery

    assert first[0]["outcome"] == "failed"
    assert second[0]["outcome"] == "succeeded"
    positions = list(RecoveryAttempt.objects.order_by("started_at", "pk").values_list("action__position", flat=True))
    assert positions == [0, 1]


@pytest.mark.django_db
def test_it_climbs_the_action_ladder_after_a_repair_that_did_not_hold(flag_target, make_service, add_action, tmp_path):
    server, flag = flag_target
    svc = make_service(url=server.url)
    heavy = tmp_path / "heavy-ran"
    # The first rung "fixes" it for a moment only; after that loop the next rung is due.
    add_action(svc, "command", {"argv": touch_argv(flag)}, cooldown=0, escalate_after=5)
    add_action(svc, "command", {"argv": touch_argv(heavy)}, cooldown=0)

    first = rounds.run([svc]).recovery
    flag.unlink()  # the repair did not hold
    rounds.run(list(Service.objects.filter(pk=svc.pk)))

    assert first[0]["outcome"] == "succeeded"
    attempts = list(RecoveryAttempt.objects.exclude(outcome__startswith="skipped_").order_by("started_at", "pk"))
    assert [a.action.position for a in attempts] == [0, 1]
    assert attempts[0].action_data["repair_loop"] is True and attempts[0].outcome == "succeeded"
    assert heavy.exists()
