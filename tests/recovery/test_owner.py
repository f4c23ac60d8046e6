"""recovery.owner: a running attempt's owner stays alive through a database outage (its beat reconnects, and no
checker judges a heartbeat the outage kept from beating), and the pid check is trusted only on the owner's own
machine (boot and pid namespace), never by hostname alone."""

from __future__ import annotations

import time
from datetime import timedelta

try:
    import psycopg
except ImportError:  # SQLite only: the PostgreSQL test is skipped
    psycopg = None
import pytest
from django.db import connection
from django.utils import timezone

from core import db
from core.liveness import owner_dead_after
from core.models import SchedulerHeartbeat
from recovery.engine import abandon_stale
from recovery.models import RecoveryAttempt, RecoveryState
from recovery.owner import OWNER_PREFIX, Liveness, OwnerBeat, this_host
from tests.core.outage_support import unwritable
from tests.servers import wait_for

Outcome = RecoveryAttempt.Outcome
GONE = 2**22 + 12345  # above the default pid_max: no such process


@pytest.fixture(autouse=True)
def _no_recent_db_error():
    """Another test's outage must not hold back this test's takeovers (the timestamp is process-wide)."""
    db.last_transient_at = None
    yield
    db.last_transient_at = None


def _claim(svc, owner: str) -> RecoveryAttempt:
    started = timezone.now()
    RecoveryState.objects.create(
        service=svc, running_since=started, claim_token="t0ken", claimed_by=owner, next_allowed_at=started
    )
    return RecoveryAttempt.objects.create(
        service=svc, trigger="auto", action_kind="command", started_at=started, owner=owner
    )


@pytest.mark.slow("a real database outage across several heartbeat intervals")
@pytest.mark.django_db(transaction=True)
def test_it_keeps_beating_after_a_database_outage_and_no_checker_takes_the_live_claim(
    outage, settings, tmp_path, make_service
):
    # Before the fix the beat thread kept its dead connection (PostgreSQL: terminated by the restart) and never
    # beat again, and a checker running right after the outage took the live claim over by the beat's age.
    settings.VAR_DIR = tmp_path
    svc = make_service()
    with OwnerBeat() as owner:
        attempt = _claim(svc, owner)
        outage.start()
        time.sleep(owner_dead_after().total_seconds() + 1.5)  # every beat fails: the row ages past the bound
        outage.end()
        ended = timezone.now()

        assert abandon_stale() == 0  # right after the outage: the beat's age says nothing of its owner yet
        assert wait_for(
            lambda: SchedulerHeartbeat.objects.get(name=OWNER_PREFIX + owner).last_run_at > ended, timeout=5
        ), "the owner never beat again after the database came back"
        time.sleep(owner_dead_after().total_seconds() + 0.5)
        assert abandon_stale() == 0  # a checker that has been connected long enough sees it alive

        attempt.refresh_from_db()
        assert attempt.outcome == Outcome.IN_PROGRESS
        assert RecoveryState.objects.get(service=svc).claimed_by == owner


@pytest.mark.django_db(transaction=True)
def test_it_judges_heartbeat_ages_only_after_this_process_has_reached_the_database_for_a_while(
    settings, tmp_path, make_service
):
    settings.VAR_DIR = tmp_path
    svc = make_service()
    owner = "otherhost:4242:abcd1234"
    attempt = _claim(svc, owner)
    SchedulerHeartbeat.objects.create(name=OWNER_PREFIX + owner, last_run_at=timezone.now() - timedelta(seconds=15))
    with unwritable(), pytest.raises(Exception) as failed:  # a real transient error of this process
        db.run_db(lambda: SchedulerHeartbeat.objects.filter(name="x").update(pid=1), retry=False)
    assert db.is_transient(failed.value)

    assert abandon_stale() == 0  # the owner may have been kept from beating by the same outage
    attempt.refresh_from_db()
    assert attempt.outcome == Outcome.IN_PROGRESS

    db.last_transient_at -= owner_dead_after().total_seconds() + 1  # connected for longer than the bound since
    assert abandon_stale() == 1
    attempt.refresh_from_db()
    assert attempt.outcome == Outcome.ABANDONED and "stopped beating" in attempt.detail


@pytest.mark.django_db
def test_it_trusts_the_pid_check_only_on_the_owners_own_machine():
    now = timezone.now()
    local = OwnerBeat().owner
    host, _pid, rest = local.split(":")
    same_machine = f"{host}:{GONE}:{rest}"
    # Another container with this hostname (network_mode: host), or another pod whose name is cut the same.
    other_machine = f"{this_host()}:{GONE}:abcd1234@00000000"
    older_format = f"{this_host()}:{GONE}:abcd1234"
    for owner in (same_machine, other_machine, older_format):
        SchedulerHeartbeat.objects.create(name=OWNER_PREFIX + owner, last_run_at=now)

    alive = Liveness(now)
    assert f"its process {GONE}" in alive.dead_reason(same_machine)
    assert alive.dead_reason(other_machine) == ""  # its heartbeat is fresh: alive, whatever pid it has here
    assert alive.dead_reason(older_format) == ""


@pytest.mark.django_db(transaction=True)
def test_it_beats_on_a_new_connection_after_the_database_dropped_the_old_one(settings, tmp_path, make_service):
    # A restarted PostgreSQL: every open connection is gone at once (the beat thread's too) and the server is back.
    if connection.vendor != "postgresql":
        pytest.skip("a dropped server connection needs PostgreSQL")
    settings.VAR_DIR = tmp_path
    with OwnerBeat() as owner:
        row = SchedulerHeartbeat.objects.filter(name=OWNER_PREFIX + owner)
        first = row.get().last_run_at
        assert wait_for(lambda: row.get().last_run_at > first, timeout=5)  # the thread has its connection
        s = connection.settings_dict
        with psycopg.connect(
            host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"] or None, dbname=s["NAME"]
        ) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        dropped = timezone.now()
        db.close_connections()  # this thread's (the test's) own, dropped too

        assert wait_for(lambda: row.get().last_run_at > dropped + timedelta(seconds=1), timeout=6), (
            "the owner kept its dead connection and never beat again"
        )
