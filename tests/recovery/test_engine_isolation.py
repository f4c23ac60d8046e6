"""One service's bad value or crash never stops the automatic recovery of the others in its round.

Rows written before the config bounds (or by hand in the database) can still hold values no round can
use: `verify_delay = inf` makes time.sleep raise after the action ran; the next critical service of the
same round must still be repaired, and the crash recorded as a failed attempt.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from dispatch import rounds
from health.models import Service
from recovery.engine import _crashed
from recovery.models import RecoveryAction, RecoveryAttempt, RecoveryState
from recovery.owner import OwnerBeat
from tests.recovery.conftest import touch_argv
from tests.servers import Reply

pytestmark = pytest.mark.django_db


def broken_until_flag(server, flag: Path) -> None:
    server.handler = lambda request: Reply(200, "ok") if flag.exists() else Reply(503, "broken")


def test_it_recovers_the_next_service_when_one_crashes_mid_attempt(
    make_http_server, tmp_path, make_service, add_action
):
    first, second = make_http_server(), make_http_server()
    flag_a, flag_b = tmp_path / "a", tmp_path / "b"
    broken_until_flag(first, flag_a)
    broken_until_flag(second, flag_b)
    bad = make_service("a-bad", url=first.url)
    good = make_service("b-good", url=second.url)
    add_action(bad, "command", {"argv": touch_argv(flag_a)})
    add_action(good, "command", {"argv": touch_argv(flag_b)})
    # A row the bounds would refuse today, as one imported before them still holds it.
    RecoveryAction.objects.filter(service=bad).update(verify_delay=float("inf"))

    result = rounds.run([bad, good])  # no exception escapes the round

    assert flag_b.exists(), "the second critical service was never recovered"
    assert Service.objects.get(pk=good.pk).status == "up"
    by_service = {r["service"]: r for r in result.recovery}
    assert by_service["b-good"]["outcome"] == "succeeded"
    assert by_service["a-bad"]["success"] is False
    crashed = RecoveryAttempt.objects.get(service=bad)
    assert crashed.outcome == "failed" and "internal error" in crashed.detail
    assert RecoveryState.objects.get(service=bad).running_since is None  # its claim was released


def test_it_records_a_crash_before_the_attempt_started_and_goes_on(
    make_http_server, tmp_path, make_service, add_action, monkeypatch
):
    first, second = make_http_server(), make_http_server()
    flag_a, flag_b = tmp_path / "a", tmp_path / "b"
    broken_until_flag(first, flag_a)
    broken_until_flag(second, flag_b)
    bad = make_service("a-bad", url=first.url)
    good = make_service("b-good", url=second.url)
    add_action(bad, "command", {"argv": touch_argv(flag_a)})
    add_action(good, "command", {"argv": touch_argv(flag_b)})
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's integer column cannot hold the cooldown (SQLite stores it)")
    # The value: a cooldown no timedelta holds.
    RecoveryAction.objects.filter(service=bad).update(cooldown=9223372036854775807)

    result = rounds.run([bad, good])

    assert flag_b.exists() and Service.objects.get(pk=good.pk).status == "up"
    by_service = {r["service"]: r for r in result.recovery}
    assert by_service["b-good"]["outcome"] == "succeeded"
    assert by_service["a-bad"]["success"] is False and "OverflowError" in by_service["a-bad"]["reason"]
    crashed = RecoveryAttempt.objects.get(service=bad)
    assert crashed.outcome == "failed" and "OverflowError" in crashed.detail


def _crash() -> OverflowError:
    try:
        float("inf").__int__()
    except OverflowError as exc:
        return exc
    raise AssertionError("no crash")


def _held(svc, owner: str, started) -> RecoveryAttempt:
    RecoveryState.objects.create(
        service=svc, running_since=started, claim_token="t0ken", claimed_by=owner, next_allowed_at=started
    )
    return RecoveryAttempt.objects.create(
        service=svc, trigger="auto", action_kind="command", started_at=started, owner=owner
    )


def test_it_records_a_crash_after_the_claim_as_failed_and_frees_the_claim(make_service):
    # The attempt was left in progress (even the crash handler's own write failed): before the fix it stayed so,
    # its claim held, and a later "abandoned: … stopped beating" hid the real error.
    svc = make_service("a-bad")
    since = timezone.now()
    owner = OwnerBeat().owner  # this process's owner, whose heartbeat row ended with the crashed attempt
    left = _held(svc, owner, timezone.now())

    result = _crashed(svc, _crash(), since)

    left.refresh_from_db()
    assert left.outcome == "failed" and "internal error: OverflowError" in left.detail
    assert left.finished_at is not None
    state = RecoveryState.objects.get(service=svc)
    assert state.running_since is None and state.claimed_by == ""
    assert result["success"] is False and result["attempt"] == left.pk


def test_it_never_finishes_a_live_owners_attempt_after_a_crash(make_service):
    svc = make_service("a-bad")
    since = timezone.now()
    with OwnerBeat() as live:  # another thread's attempt of this service, still running
        running = _held(svc, live, timezone.now())
        _crashed(svc, _crash(), since)
        running.refresh_from_db()
        assert running.outcome == "in_progress"
        assert RecoveryState.objects.get(service=svc).claimed_by == live
