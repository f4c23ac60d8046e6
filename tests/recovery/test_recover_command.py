from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from recovery.models import RecoveryAttempt
from tests.recovery.conftest import touch_argv


@pytest.mark.django_db
def test_it_recovers_a_named_service_and_prints_a_summary(flag_target, make_service, add_action):
    server, flag = flag_target
    add_action(make_service(url=server.url), "command", {"argv": touch_argv(flag)})
    out = StringIO()
    call_command("recover", "web", stdout=out)
    text = out.getvalue()
    assert "web: succeeded (command)" in text
    assert "1 service(s): 1 recovered, 0 failed, 0 skipped" in text
    attempt = RecoveryAttempt.objects.get()
    assert attempt.trigger == "manual" and attempt.requested_via == "manage.py recover"


@pytest.mark.django_db
def test_it_exits_1_when_skipped_and_force_bypasses_the_cooldown(flag_target, make_service, add_action):
    server, flag = flag_target
    add_action(make_service(url=server.url), "command", {"argv": ["true"]})
    with pytest.raises(SystemExit) as first:
        call_command("recover", "web", stdout=StringIO())
    assert first.value.code == 1  # the action ran, the service stayed broken
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("recover", "web", stdout=out)
    assert "web: skipped_cooldown - cooldown: next attempt allowed in" in out.getvalue()
    with pytest.raises(SystemExit):
        call_command("recover", "web", "--force", stdout=StringIO())
    assert list(RecoveryAttempt.objects.order_by("pk").values_list("outcome", flat=True)) == [
        "failed",
        "skipped_cooldown",
        "failed",
    ]


@pytest.mark.django_db
def test_it_rejects_an_unknown_name_and_runs_nothing(flag_target, make_service, add_action):
    server, flag = flag_target
    add_action(make_service(url=server.url), "command", {"argv": touch_argv(flag)})
    err = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("recover", "web", "ghost", stderr=err)
    assert exit_info.value.code == 2
    assert "unknown service: ghost" in err.getvalue()
    assert RecoveryAttempt.objects.count() == 0 and not flag.exists()


@pytest.mark.django_db
def test_it_says_so_when_nothing_needs_recovery(make_service):
    make_service()
    out = StringIO()
    call_command("recover", stdout=out)
    assert "nothing needs recovery" in out.getvalue()
