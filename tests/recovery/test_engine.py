from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.utils import timezone

from health.models import Event, ProbeResult, Service
from health.runner import run_round
from recovery.engine import abandon_stale, recover_services
from recovery.models import RecoveryAttempt, RecoveryState
from tests.recovery.conftest import PY, touch_argv

Outcome = RecoveryAttempt.Outcome


@pytest.mark.django_db
def test_it_succeeds_when_the_command_fixes_the_target_and_the_reprobe_is_up(flag_target, make_service, add_action):
    server, flag = flag_target
    svc = make_service(url=server.url + "/health")
    add_action(svc, "command", {"argv": touch_argv(flag)})
    run_round([svc])
    assert Service.objects.get(pk=svc.pk).status == "down"

    (result,) = recover_services(["web"], trigger="manual", via="test")

    assert result["success"] is True and result["skipped"] is False and result["outcome"] == "succeeded"
    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    assert attempt.action_ok is True and attempt.verified is True
    assert attempt.action_detail.startswith("exit 0")
    assert attempt.verify_detail.startswith("up")
    assert attempt.finished_at is not None and attempt.duration_ms >= 0
    # The verification went through the normal runner: a recorded probe result and state.
    assert ProbeResult.objects.filter(service=svc).count() == 2
    assert Service.objects.get(pk=svc.pk).status == "up"
    assert Event.objects.filter(kind=Event.Kind.RECOVERY_SUCCEEDED, service=svc).count() == 1
    state = RecoveryState.objects.get(service=svc)
    assert state.consecutive_failures == 0 and state.running_since is None


@pytest.mark.django_db
def test_it_fails_when_the_command_exits_0_but_the_target_stays_broken(flag_target, make_service, add_action):
    server, _ = flag_target
    svc = make_service(url=server.url + "/health")
    add_action(svc, "command", {"argv": [PY, "-c", "print('restarted, honest')"]})

    (result,) = recover_services(["web"], trigger="manual")

    assert result["success"] is False and result["outcome"] == "failed"
    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    assert attempt.action_ok is True  # the command exited 0 ...
    assert attempt.verified is False  # ... but the service is not fixed
    assert "restarted, honest" in attempt.action_detail
    assert attempt.verify_detail.startswith("down")
    assert Event.objects.filter(kind=Event.Kind.RECOVERY_FAILED, service=svc).count() == 1
    assert RecoveryState.objects.get(service=svc).consecutive_failures == 1


@pytest.mark.django_db
def test_it_accepts_degraded_only_when_configured(http_server, make_service, add_action):
    svc = make_service(url=http_server.url, degraded_latency_ms=1)
    from tests.servers import Reply

    http_server.reply = Reply(200, "slow", delay=0.05)
    action = add_action(svc, "command", {"argv": [PY, "-c", "pass"]}, cooldown=0)
    (strict,) = recover_services(["web"], trigger="manual")
    assert strict["outcome"] == "failed"
    action.settings = {"argv": [PY, "-c", "pass"], "verify_degraded": True}
    action.save()
    (lenient,) = recover_services(["web"], trigger="manual", force=True)
    assert lenient["outcome"] == "succeeded"
    assert RecoveryAttempt.objects.get(pk=lenient["attempt"]).verify_detail.startswith("degraded")


@pytest.mark.django_db
def test_it_never_stores_or_logs_an_expanded_secret(flag_target, make_service, add_action, monkeypatch):
    secret = "s3cr3t-token-value-42"
    monkeypatch.setenv("OPS_TEST_SECRET", secret)
    server, flag = flag_target
    svc = make_service(url=server.url)
    argv = [PY, "-c", "import os, sys; print('token is', os.environ['TOKEN']); sys.exit(3)"]
    add_action(svc, "command", {"argv": argv, "env": {"TOKEN": "${OPS_TEST_SECRET}"}})
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("opsportal.recovery")
    logger.addHandler(handler)
    try:
        (result,) = recover_services(["web"], trigger="manual")
    finally:
        logger.removeHandler(handler)

    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    assert attempt.action_ok is False and attempt.outcome == "failed"
    assert "token is ***" in attempt.action_detail
    everything = " ".join(
        [attempt.action_detail, attempt.detail, attempt.verify_detail, str(attempt.action_data), *lines]
    )
    everything += " ".join(Event.objects.values_list("body", flat=True))
    assert secret not in everything
    assert lines, "the attempt logged nothing"


@pytest.mark.django_db
def test_it_logs_one_line_at_start_and_one_at_end_in_the_old_format(flag_target, make_service, add_action):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    fmt = django_settings.LOGGING["formatters"]["human"]
    handler = logging.Handler()
    handler.setFormatter(logging.Formatter(fmt["format"], fmt["datefmt"]))
    lines: list[str] = []
    handler.emit = lambda record: lines.append(handler.format(record))  # type: ignore[method-assign]
    logger = logging.getLogger("opsportal.recovery")
    logger.addHandler(handler)
    try:
        recover_services(["web"], trigger="manual", via="test")
    finally:
        logger.removeHandler(handler)

    assert len(lines) == 2, lines
    stamp = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[INFO\] "
    assert re.match(stamp + r"🔄 Recovery of web started: command \(trigger manual by test", lines[0])
    assert re.match(stamp + r"✅ Recovery of web succeeded in", lines[1])


@pytest.mark.django_db
def test_it_raises_for_an_unknown_name_before_anything_runs(flag_target, make_service, add_action):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    with pytest.raises(Service.DoesNotExist, match="nope"):
        recover_services(["web", "nope"], trigger="api")
    assert not flag.exists()
    assert RecoveryAttempt.objects.count() == 0


@pytest.mark.django_db
def test_it_rejects_an_unknown_trigger(make_service):
    make_service()
    with pytest.raises(ValueError, match="unknown trigger"):
        recover_services(["web"], trigger="cron")
    assert RecoveryAttempt.objects.count() == 0


@pytest.mark.django_db
def test_it_picks_the_services_that_need_it_when_none_are_named(flag_target, make_service, add_action):
    server, flag = flag_target
    down = make_service("down-one", url=server.url)
    add_action(down, "command", {"argv": touch_argv(flag)})
    make_service("no-action", url=server.url)
    up = make_service("up-one", url=server.url)
    add_action(up, "command", {"argv": touch_argv(flag)})
    run_round([down, Service.objects.get(name="no-action")])
    Service.objects.filter(pk=up.pk).update(status="up")

    results = recover_services(None, trigger="api")

    assert [r["service"] for r in results] == ["down-one"]
    assert results[0]["success"] is True


@pytest.mark.django_db
def test_it_records_a_skip_for_a_service_without_an_enabled_action(make_service, add_action):
    svc = make_service()
    add_action(svc, "command", {"argv": [PY, "-c", "pass"]}, enabled=False)
    (result,) = recover_services(["web"], trigger="manual")
    assert result["skipped"] is True and result["outcome"] == "skipped_disabled"
    assert "no enabled recovery action" in result["reason"]
    assert RecoveryAttempt.objects.get().outcome == "skipped_disabled"


@pytest.mark.django_db
def test_it_records_a_failed_attempt_when_an_action_crashes_or_is_misconfigured(make_service, add_action):
    svc = make_service()
    add_action(svc, "command", {"argv": "not a list"})
    (result,) = recover_services(["web"], trigger="manual")
    assert result["outcome"] == "failed"
    assert "config error" in RecoveryAttempt.objects.get(pk=result["attempt"]).action_detail
    assert RecoveryState.objects.get(service=svc).running_since is None


@pytest.mark.django_db
def test_it_marks_a_stale_in_progress_attempt_abandoned_and_frees_its_claim(make_service, add_action, flag_target):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)}, cooldown=60)
    started = timezone.now() - timedelta(hours=1)
    dead = RecoveryAttempt.objects.create(service=svc, trigger="auto", action_kind="command", started_at=started)
    RecoveryState.objects.create(service=svc, running_since=started, claim_token="deadbeef", next_allowed_at=started)
    fresh = RecoveryAttempt.objects.create(service=svc, trigger="auto", action_kind="command")

    assert abandon_stale() == 1

    dead.refresh_from_db()
    fresh.refresh_from_db()
    assert dead.outcome == "abandoned" and dead.finished_at is not None and "abandoned" in dead.detail
    assert fresh.outcome == "in_progress"
    assert RecoveryState.objects.get(service=svc).running_since is None
    fresh.delete()
    (result,) = recover_services(["web"], trigger="manual")
    assert result["success"] is True


@pytest.mark.django_db
def test_it_takes_over_a_stale_claim_and_abandons_its_attempt(make_service, add_action, flag_target):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    with time_machine.travel(timezone.now() - timedelta(hours=2), tick=True):
        t = timezone.now()
        RecoveryAttempt.objects.create(service=svc, trigger="api", action_kind="command", started_at=t)
        RecoveryState.objects.create(service=svc, running_since=t, claim_token="x", next_allowed_at=t)
    (result,) = recover_services(["web"], trigger="api")
    assert result["success"] is True
    assert RecoveryAttempt.objects.filter(outcome="abandoned").count() == 1


@pytest.mark.django_db
def test_it_skips_a_paused_service(make_service, add_action, flag_target):
    server, flag = flag_target
    svc = make_service(url=server.url, paused=True)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    (result,) = recover_services(["web"], trigger="manual", force=True)
    assert result["outcome"] == "skipped_disabled"
    assert not flag.exists()


@pytest.mark.django_db
def test_it_records_who_asked(make_service, add_action, flag_target, django_user_model):
    server, flag = flag_target
    user = django_user_model.objects.create_user("ops", password=None, is_staff=True)
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    (result,) = recover_services(["web"], trigger="api", user=user, via="token ci")
    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    assert attempt.requested_by == user and attempt.requested_via == "token ci" and attempt.trigger == "api"
