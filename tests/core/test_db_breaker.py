"""The circuit breaker against a really unreachable database (a closed port, or a path that cannot open)."""

from __future__ import annotations

import time

import pytest
from django.db import DatabaseError, connection, connections

from core import db
from health.models import Event
from tests.servers import free_port

ALIAS = "h6_unreachable"


@pytest.fixture
def unreachable(tmp_path):
    """A second alias to the portal's database server, first pointing where nothing answers.

    Returns a function that makes it reachable (the real server and the test database).
    """
    real = connections.settings["default"]
    dead = {**real, "OPTIONS": dict(real.get("OPTIONS", {}))}
    if connection.vendor == "postgresql":
        dead["PORT"] = free_port()
        dead["OPTIONS"]["connect_timeout"] = 2
    else:
        dead["NAME"] = str(tmp_path / "missing-dir" / "db.sqlite3")
        dead["OPTIONS"].pop("init_command", None)
    connections.settings[ALIAS] = dead
    connections[ALIAS]  # create the wrapper, then unlist the alias: a dynamic connection the test may use
    connections.settings.pop(ALIAS)

    def restore() -> None:
        connections[ALIAS].close()
        connections[ALIAS].settings_dict.update(
            {"PORT": real.get("PORT"), "NAME": connection.settings_dict["NAME"]}
            if connection.vendor == "postgresql"
            else {"NAME": str(tmp_path / "db.sqlite3")}
        )

    yield restore
    db.close_connections(ALIAS)
    del connections[ALIAS]
    db.configure_breaker()
    db.breaker.close()


def select_one() -> int:
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


@pytest.mark.slow("waits out the circuit breaker's reset")
@pytest.mark.django_db(transaction=True)
def test_it_opens_after_five_failures_fails_fast_and_closes_once_reachable(unreachable, db_log, settings):
    settings.DB_BREAKER_RESET_S = 1
    db.configure_breaker()
    db.breaker.close()
    db._pending_events.clear()  # state changes of earlier tests in this process
    for _ in range(5):
        with pytest.raises(DatabaseError):
            db.run_db(select_one, using=ALIAS, retry=False)
    assert db.breaker_status() == {"state": "open", "consecutiveFailures": 5}
    assert "[db] Circuit breaker opened after 5 consecutive failures" in [r.getMessage() for r in db_log.records]

    started = time.perf_counter()
    with pytest.raises(db.CircuitBreakerError):
        db.run_db(select_one, using=ALIAS)  # even with retries: an open breaker is not waited on
    assert (time.perf_counter() - started) < 0.05
    assert db.database_status()["circuitBreaker"]["state"] == "open"
    assert db.database_status()["status"] == "down"

    unreachable()
    time.sleep(1.1)  # the reset timeout: the next call is the half-open trial
    assert db.run_db(select_one, using=ALIAS) == 1
    assert db.breaker_status() == {"state": "closed", "consecutiveFailures": 0}
    messages = [r.getMessage() for r in db_log.records]
    assert "[db] Circuit breaker half-open: trying the database again" in messages
    assert "[db] Circuit breaker closed: the database answers again" in messages
    # Recorded once the database answers again.
    assert list(Event.objects.order_by("pk").values_list("kind", "title")) == [
        ("breaker_opened", "Database circuit breaker opened"),
        ("breaker_closed", "Database circuit breaker closed"),
    ]


@pytest.mark.slow("waits out the circuit breaker's reset")
@pytest.mark.django_db(transaction=True)
def test_it_reopens_when_the_half_open_trial_fails(unreachable, settings):
    settings.DB_BREAKER_RESET_S = 1
    db.configure_breaker()
    for _ in range(5):
        with pytest.raises(DatabaseError):
            db.run_db(select_one, using=ALIAS, retry=False)
    time.sleep(1.1)
    with pytest.raises(DatabaseError):
        db.run_db(select_one, using=ALIAS, retry=False)  # the trial reaches the dead server again
    assert db.breaker.current_state == "open"


@pytest.mark.django_db(transaction=True)
def test_it_does_not_count_non_transient_errors():
    def bad_sql() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM h6_no_such_table")

    db.breaker.close()
    for _ in range(6):
        with pytest.raises(DatabaseError):
            db.run_db(bad_sql)
    assert db.breaker_status() == {"state": "closed", "consecutiveFailures": 0}


@pytest.mark.django_db
def test_it_reports_the_breaker_in_the_database_status():
    status = db.database_status()
    assert status["status"] == "up"
    assert status["circuitBreaker"] == {"state": "closed", "consecutiveFailures": 0}
    assert isinstance(status["latencyMs"], float)


@pytest.mark.django_db
def test_it_closes_the_breaker_on_reset_and_records_both_changes():
    db._pending_events.clear()
    db.breaker.open()
    db.reset_breaker()
    assert db.breaker.current_state == "closed"
    assert list(Event.objects.order_by("pk").values_list("kind", flat=True)) == ["breaker_opened", "breaker_closed"]
    assert db._pending_events == []


def test_it_leaves_nothing_queued_after_a_breaker_closed_by_hand():
    db.breaker.open()
    db.breaker.close()  # as a test's clean-up does: no event may leak into a later database write
    assert db._pending_events == []
