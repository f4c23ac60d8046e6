"""Issue 15 item 4: a recovery claim is stale only when its owner is dead, never by age alone; an attempt's
final outcome is never overwritten by an older writer; an action longer than the stale bound is refused."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import connections
from django.utils import timezone

from configfile.config import ConfigError, parse
from core import db
from core.models import SchedulerHeartbeat
from health.models import Service
from opsportal import doctor
from recovery.actions.base import check_stale_bound
from recovery.engine import abandon_stale, recover_services
from recovery.models import RecoveryAction, RecoveryAttempt, RecoveryState
from recovery.owner import OWNER_PREFIX, machine_id
from recovery.stats import history
from tests.recovery.conftest import PY, touch_argv

Outcome = RecoveryAttempt.Outcome


@pytest.fixture(autouse=True)
def _no_recent_db_error():
    """Another test's outage must not hold back this file's heartbeat takeovers (core.db is process-wide)."""
    db.last_transient_at = None


def _slow_action(log: Path, seconds: float) -> list[str]:
    """An action that notes its start and end in `log`, so overlapping copies are visible."""
    code = (
        "import sys, time; log = open(sys.argv[1], 'a', buffering=1); log.write(f'start {time.time()}\\n'); "
        f"time.sleep({seconds}); log.write(f'end {{time.time()}}\\n')"
    )
    return [PY, "-c", code, str(log)]


def _in_thread(out: list, errors: list, **kwargs: object) -> None:
    try:
        out.extend(recover_services(["web"], trigger="api", via="thread", **kwargs))
    except Exception as exc:  # reported by the test
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.slow("an action that runs past the stale bound")
@pytest.mark.django_db(transaction=True)
def test_it_never_runs_a_second_copy_while_an_action_longer_than_the_stale_bound_runs(
    settings, flag_target, make_service, add_action, tmp_path
):
    # The reproduction, shortened: a stale bound of 1 s and an action of 4 s. Before the fix the claim went
    # stale by age at 1 s, a forced request ran a second copy and abandoned the running attempt.
    settings.RECOVERY_STALE_AFTER = 1
    server, flag = flag_target
    log = tmp_path / "runs.log"
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": _slow_action(log, 4)}, timeout=10)
    out: list = []
    errors: list = []
    first = threading.Thread(target=_in_thread, args=(out, errors))
    first.start()
    deadline = time.monotonic() + 10
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)  # past the stale bound, while the first copy runs

    (second,) = recover_services(["web"], trigger="api", via="second", force=True)
    first.join(timeout=30)

    assert errors == []
    assert second["outcome"] == Outcome.SKIPPED_BUSY, second
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["start", "end"]  # one copy ran
    (ran,) = RecoveryAttempt.objects.exclude(outcome__startswith="skipped_")
    assert ran.outcome == Outcome.FAILED  # it ran to its end (the target stays broken) and kept its outcome
    assert "abandoned" not in ran.detail


def _claimed_by(svc, owner: str, *, since: timedelta, beat: timedelta | None) -> RecoveryAttempt:
    started = timezone.now() - since
    attempt = RecoveryAttempt.objects.create(
        service=svc, trigger="auto", action_kind="command", started_at=started, owner=owner
    )
    RecoveryState.objects.update_or_create(
        service=svc,
        defaults={"running_since": started, "claim_token": "t0ken", "claimed_by": owner, "next_allowed_at": started},
    )
    if beat is not None:
        SchedulerHeartbeat.objects.create(name=OWNER_PREFIX + owner, last_run_at=timezone.now() - beat)
    return attempt


@pytest.mark.django_db
def test_it_keeps_an_old_claim_whose_owner_still_beats(make_service, add_action, flag_target):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    running = _claimed_by(svc, "otherhost:4242:abcd", since=timedelta(hours=2), beat=timedelta(seconds=1))

    assert abandon_stale() == 0
    (result,) = recover_services(["web"], trigger="api", force=True)

    assert result["outcome"] == Outcome.SKIPPED_BUSY
    assert not flag.exists()
    running.refresh_from_db()
    assert running.outcome == Outcome.IN_PROGRESS


@pytest.mark.django_db
def test_it_takes_over_a_young_claim_whose_owner_stopped_beating(make_service, add_action, flag_target):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    dead = _claimed_by(svc, "otherhost:4242:abcd", since=timedelta(seconds=20), beat=timedelta(seconds=15))

    (result,) = recover_services(["web"], trigger="api", force=True)

    assert result["success"] is True
    dead.refresh_from_db()
    assert dead.outcome == Outcome.ABANDONED
    assert "stopped beating" in dead.detail
    assert RecoveryState.objects.get(service=svc).claimed_by == ""


@pytest.mark.django_db
def test_it_takes_over_at_once_when_the_owner_process_on_this_host_is_gone(make_service, add_action, flag_target):
    server, flag = flag_target
    svc = make_service(url=server.url)
    add_action(svc, "command", {"argv": touch_argv(flag)})
    gone = 2**22 + 12345  # above the default pid_max: no such process
    assert not os.path.exists(f"/proc/{gone}")
    owner = f"{socket.gethostname()[:32]}:{gone}:abcd@{machine_id()}"  # this machine: its pid check holds
    dead = _claimed_by(svc, owner, since=timedelta(seconds=1), beat=timedelta(seconds=0))  # beat is still fresh

    (result,) = recover_services(["web"], trigger="api", force=True)

    assert result["success"] is True
    dead.refresh_from_db()
    assert dead.outcome == Outcome.ABANDONED and "is gone" in dead.detail


@pytest.mark.django_db
def test_it_never_overwrites_a_final_outcome_with_an_older_writer(make_service):
    svc = make_service()
    attempt = RecoveryAttempt(service=svc, trigger="api", action_kind="command")
    attempt.store()
    # Another process decided first (here: abandoned it).
    RecoveryAttempt.objects.filter(pk=attempt.pk).update(outcome=Outcome.ABANDONED, detail="abandoned: by test")

    written = attempt.finish(Outcome.SUCCEEDED, timezone.now(), detail="fixed")

    assert written is False
    row = RecoveryAttempt.objects.get(pk=attempt.pk)
    assert (row.outcome, row.detail) == (Outcome.ABANDONED, "abandoned: by test")
    assert attempt.outcome == Outcome.ABANDONED  # the writer learns the truth


CONFIG = """
[[service]]
name = "web"
kind = "http"
url = "http://127.0.0.1:9/"

  [[service.recovery]]
  kind = "command"
  argv = ["true"]
  timeout = {timeout}
  verify_delay = {verify_delay}
"""


def test_it_refuses_an_action_table_longer_than_the_stale_bound_by_name(settings):
    settings.RECOVERY_STALE_AFTER = 120
    with pytest.raises(ConfigError) as refused:
        check_stale_bound({"timeout": 100.0, "verify_delay": 30.0}, "service[0].recovery[0]")
    assert "service[0].recovery[0].timeout" in str(refused.value) and "130 s" in str(refused.value)
    with pytest.raises(ConfigError):
        check_stale_bound({"timeout": 118.0}, "service[0].recovery[0]")  # + the default verify_delay (5)
    check_stale_bound({"timeout": 100.0, "verify_delay": 20.0}, "service[0].recovery[0]")  # at the bound: fine


def test_it_refuses_at_import_an_action_longer_than_the_stale_bound(settings):
    settings.RECOVERY_STALE_AFTER = 120
    with pytest.raises(ConfigError) as refused:
        parse(CONFIG.format(timeout=100, verify_delay=30))
    assert "service[0].recovery[0].timeout" in str(refused.value)
    assert "RECOVERY_STALE_AFTER" in str(refused.value)
    parse(CONFIG.format(timeout=100, verify_delay=20))  # exactly at the bound: accepted


@pytest.mark.django_db
def test_it_refuses_in_the_admin_an_action_longer_than_the_stale_bound(settings, make_service):
    settings.RECOVERY_STALE_AFTER = 120
    action = RecoveryAction(service=make_service(), kind="command", settings={"argv": ["true"]}, timeout=110)
    action.verify_delay = 11
    with pytest.raises(ValidationError) as refused:
        action.full_clean()
    assert "timeout" in refused.value.message_dict


@pytest.mark.django_db
def test_it_says_in_the_history_which_attempt_was_part_of_a_repair_loop(make_service):
    svc = make_service()
    RecoveryAttempt.objects.create(service=svc, trigger="auto", outcome=Outcome.SUCCEEDED)
    RecoveryAttempt.objects.create(
        service=svc, trigger="auto", outcome=Outcome.SUCCEEDED, action_data={"repair_loop": True}
    )
    assert sorted(a["repairLoop"] for a in history()) == [False, True]


PUSH_CONFIG = """
[[service]]
name = "nightly"
kind = "push"
period = 86400
grace = {grace}
{verify}
  [[service.recovery]]
  kind = "command"
  argv = ["true"]
  timeout = 30
"""


def test_it_counts_a_heartbeats_wait_for_its_proof_ping_in_the_stale_bound(settings):
    """A late job's repair waits for a success ping (verify_timeout, else grace): past the bound its claim
    would be taken over mid-wait, so import refuses it, naming what to shorten."""
    settings.RECOVERY_STALE_AFTER = 900
    with pytest.raises(ConfigError) as refused:
        parse(PUSH_CONFIG.format(grace=3600, verify=""))
    assert "service[0].recovery[0].timeout" in str(refused.value)
    assert "success ping (verify_timeout, else grace) is 3635 s" in str(refused.value)
    parse(PUSH_CONFIG.format(grace=3600, verify="verify_timeout = 600"))  # 30 + 5 + 600: fits
    with pytest.raises(ConfigError, match="is 935 s"):
        parse(PUSH_CONFIG.format(grace=60, verify="verify_timeout = 900"))


@pytest.mark.django_db
def test_it_holds_a_heartbeats_action_to_the_bound_in_the_admin_and_doctor(settings):
    settings.RECOVERY_STALE_AFTER = 900
    job = Service.objects.create(name="nightly", kind="push", settings={"period": 86400, "grace": 3600})
    action = RecoveryAction(service=job, kind="command", settings={"argv": ["true"]}, timeout=30, position=0)
    with pytest.raises(ValidationError) as refused:
        action.full_clean()
    assert "3635 s" in str(refused.value.message_dict["timeout"])
    action.save()  # saved around the admin (an older release, a lowered bound): doctor names it
    finding = doctor.check_recovery_bounds()
    assert not finding.ok and "nightly recovery[0]" in finding.detail and "3635 s" in finding.detail
