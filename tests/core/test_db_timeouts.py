"""statement_timeout on the portal's PostgreSQL connections, and the slow-query log (real sleeps, no mocks)."""

from __future__ import annotations

import time

import pytest
from django.db import OperationalError, connection

from core import db
from tests.conftest import requires_postgres


def sleep_sql(seconds: float) -> tuple[str, list]:
    """A statement that takes `seconds` on either backend (SQLite gets a sleep function of its own)."""
    if connection.vendor == "postgresql":
        return "SELECT pg_sleep(%s), %s", [seconds, "hunter2-secret-param"]
    connection.ensure_connection()
    connection.connection.create_function("h6_sleep", 1, time.sleep)
    return "SELECT h6_sleep(%s), %s", [seconds, "hunter2-secret-param"]


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_sets_the_configured_statement_timeout_on_every_connection(settings):
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        shown = cursor.fetchone()[0]
    expected = settings.DB_STATEMENT_TIMEOUT_MS
    assert shown == (f"{expected // 1000}s" if expected % 1000 == 0 else f"{expected}ms")


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_cancels_a_statement_longer_than_the_statement_timeout():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '200ms'")
            started = time.perf_counter()
            with pytest.raises(OperationalError) as caught:
                cursor.execute("SELECT pg_sleep(3)")
            elapsed = time.perf_counter() - started
    finally:
        connection.close()  # the next test gets the configured timeout back
    assert db.transient_reason(caught.value) == "57014"  # query_canceled: a transient error, retried
    assert elapsed < 2.5  # cancelled, not slept out: generous bound


@pytest.mark.django_db
def test_it_logs_a_query_slower_than_slow_query_ms_without_its_parameters(settings, db_log):
    settings.SLOW_QUERY_MS = 100
    sql, params = sleep_sql(0.3)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    slow = [r.getMessage() for r in db_log.records if r.getMessage().startswith("[db] Slow query")]
    assert len(slow) == 1
    assert "> 100 ms): SELECT " in slow[0]
    assert "sleep(%s)" in slow[0]
    assert "hunter2" not in slow[0]


@pytest.mark.django_db
def test_it_does_not_log_a_fast_query(settings, db_log):
    settings.SLOW_QUERY_MS = 5000
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert not [r for r in db_log.records if "Slow query" in r.getMessage()]


@pytest.mark.django_db
def test_it_truncates_a_long_statement(settings, db_log):
    settings.SLOW_QUERY_MS = 100
    sql, params = sleep_sql(0.2)
    padding = ", ".join(f"{n} AS c{n}" for n in range(200))
    with connection.cursor() as cursor:
        cursor.execute(sql + ", " + padding, params)
    (line,) = [r.getMessage() for r in db_log.records if "Slow query" in r.getMessage()]
    statement = line.split("): ", 1)[1]
    assert len(statement) == db.SLOW_SQL_CHARS + 1
    assert statement.endswith("…")


@pytest.mark.django_db
def test_it_installs_the_slow_query_log_once_per_connection():
    connection.ensure_connection()
    db.install_slow_query_log(connection=connection)
    assert connection.execute_wrappers.count(db.slow_query_wrapper) == 1
