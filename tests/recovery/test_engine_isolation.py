"""One service's bad value or crash never stops the automatic recovery of the others in its round.

Rows written before the config bounds (or by hand in the database) can still hold values no round can
use: `verify_delay = inf` makes time.sleep raise after the action ran; the next critical service of the
same round must still be repaired, and the crash recorded as a failed attempt.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection

from health.models import Service
from health.runner import run_round
from recovery.models import RecoveryAction, RecoveryAttempt, RecoveryState
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

    result = run_round([bad, good])  # no exception escapes the round

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

    result = run_round([bad, good])

    assert flag_b.exists() and Service.objects.get(pk=good.pk).status == "up"
    by_service = {r["service"]: r for r in result.recovery}
    assert by_service["b-good"]["outcome"] == "succeeded"
    assert by_service["a-bad"]["success"] is False and "OverflowError" in by_service["a-bad"]["reason"]
    crashed = RecoveryAttempt.objects.get(service=bad)
    assert crashed.outcome == "failed" and "OverflowError" in crashed.detail
