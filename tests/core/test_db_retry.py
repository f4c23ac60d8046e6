"""Retry of transient database errors: real faults (a terminated backend, a held lock), not mocks."""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest
from django.db import IntegrityError, OperationalError, connection, transaction

from core import db
from health.models import ProbeResult, Service
from health.runner import run_round
from tests.conftest import requires_postgres
from tests.servers import Reply


@pytest.fixture(autouse=True)
def _fast_retries(settings, tmp_path):
    settings.DB_RETRY_BACKOFF_MS = 20
    settings.VAR_DIR = tmp_path
    settings.AUTO_RECOVERY_ENABLED = False
    db.breaker.close()
    yield
    db.breaker.close()


def pg_error(sqlstate: str) -> Exception:
    cls = psycopg.errors.lookup(sqlstate)
    try:
        try:
            raise cls("boom")
        except cls as inner:
            raise OperationalError("wrapped") from inner
    except OperationalError as outer:
        return outer


@pytest.mark.parametrize(
    "sqlstate", ["08006", "08001", "57P01", "57P02", "57P03", "53300", "57014", "55P03", "40001", "40P01"]
)
def test_it_classifies_transient_sqlstates(sqlstate):
    assert db.transient_reason(pg_error(sqlstate)) == sqlstate


@pytest.mark.parametrize("sqlstate", ["42601", "23505", "22P02"])
def test_it_does_not_retry_syntax_or_integrity_errors(sqlstate):
    assert db.transient_reason(pg_error(sqlstate)) is None


def test_it_classifies_sqlite_locked_and_an_open_breaker():
    try:
        raise OperationalError("database is locked") from sqlite3.OperationalError("database is locked")
    except OperationalError as exc:
        assert db.transient_reason(exc) == "database is locked"
    assert db.transient_reason(db.CircuitBreakerError("open")) is None


def test_it_retries_three_times_then_gives_up_and_logs_each_retry(db_log):
    calls = []

    def always_down():
        calls.append(1)
        raise pg_error("57P03")

    with pytest.raises(OperationalError):
        db.run_db(always_down)
    assert len(calls) == 4  # the try and 3 retries
    retries = [r.getMessage() for r in db_log.records if "Retry" in r.getMessage()]
    assert retries == ["[db] Retry 1/3: 57P03", "[db] Retry 2/3: 57P03", "[db] Retry 3/3: 57P03"]


def test_it_starts_no_backoff_that_would_end_past_the_deadline(db_log, settings):
    settings.DB_RETRY_BACKOFF_MS = 200  # 0.2 s, 0.4 s, 0.8 s
    calls: list[float] = []

    def always_down():
        calls.append(time.monotonic())
        raise pg_error("08006")

    started = time.monotonic()
    with pytest.raises(OperationalError):
        db.run_db(always_down, deadline=started + 0.5)  # room for the first backoff, not the second
    assert len(calls) == 2 and time.monotonic() - started < 0.5
    messages = [r.getMessage() for r in db_log.records if r.name == "opsportal.db"]
    assert messages == ["[db] Retry 1/3: 08006", "[db] No retry after try 2: the unit's deadline comes first (08006)"]
    # A deadline already past: one try, no wait; one in reach changes nothing for a unit that succeeds.
    calls.clear()
    with pytest.raises(OperationalError):
        db.run_db(always_down, deadline=time.monotonic() - 1)
    assert len(calls) == 1
    assert db.run_db(lambda: 42, deadline=time.monotonic() + 0.1) == 42


def test_it_does_not_retry_a_non_transient_error():
    calls = []

    def broken():
        calls.append(1)
        raise IntegrityError("duplicate key")

    with pytest.raises(IntegrityError):
        db.run_db(broken)
    assert calls == [1]


@pytest.mark.django_db
def test_it_never_retries_inside_atomic():
    calls = []

    def down():
        calls.append(1)
        raise pg_error("40001")

    with pytest.raises(OperationalError), transaction.atomic():
        db.run_db(down)
    assert calls == [1]


@pytest.mark.slow("holds a SQLite lock for the retries to wait on")
@pytest.mark.django_db(transaction=True)
def test_it_retries_a_sqlite_lock_until_it_is_released(db_log, settings):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's lock; the PostgreSQL faults are tested below")
    settings.DB_RETRY_BACKOFF_MS = 200
    service = Service.objects.create(name="web", kind="tcp", settings={"host": "127.0.0.1", "port": 9})
    # A second connection holds the write lock of the (shared, in-memory) test database for a moment.
    holder = sqlite3.connect(connection.settings_dict["NAME"], uri=True, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute(
        "INSERT INTO health_event (kind, created_at, subject, title, body, data) VALUES "
        "('test', '2026-01-01', '', 't', '', '{}')"
    )
    release = threading.Timer(0.3, holder.commit)
    release.start()
    try:
        db.run_db(lambda: ProbeResult.objects.create(service=service, status="up"))
    finally:
        release.join()
        holder.close()
    assert ProbeResult.objects.filter(service=service).count() == 1
    assert any(r.getMessage() == "[db] Retry 1/3: database is locked" for r in db_log.records)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_survives_pg_terminate_backend_mid_round(http_server, db_log):
    """The portal's connection is killed while a probe runs: record() fails once, is retried, the round completes."""
    http_server.reply = Reply(delay=1.0)
    service = Service.objects.create(name="web", kind="http", settings={"url": http_server.url + "/"}, timeout=5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = connection.get_connection_params()
    killer_dsn = {k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}

    def kill() -> None:
        with psycopg.connect(**killer_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    # CONN_HEALTH_CHECKS would quietly replace a connection that died before the round's first query;
    # off, the dead connection is used as one that dies mid-transaction would be: only the retry helps.
    connection.health_check_enabled = False
    timer = threading.Timer(0.3, kill)
    timer.start()
    result = run_round([service])
    timer.join()
    assert result.status == "healthy"
    assert ProbeResult.objects.filter(service=service, status="up").count() == 1
    messages = [r.getMessage() for r in db_log.records]
    assert any(m.startswith("[db] Retry 1/3: ") for m in messages), messages
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid  # a new connection did the work


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_retries_a_real_lock_timeout(db_log, settings):
    """55P03 from a row held by another session with lock_timeout set: retried once it is free."""
    settings.DB_RETRY_BACKOFF_MS = 100
    service = Service.objects.create(name="web", kind="tcp", settings={"host": "127.0.0.1", "port": 9})
    params = connection.get_connection_params()
    dsn = {k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    holder = psycopg.connect(**dsn)
    holder.execute("SELECT 1 FROM health_service WHERE id = %s FOR UPDATE", [service.pk])
    release = threading.Timer(0.4, holder.commit)
    release.start()

    def update() -> int:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '100ms'")
            return Service.objects.select_for_update().filter(pk=service.pk).update(description="claimed")

    try:
        assert db.run_db(update) == 1
    finally:
        release.join()
        holder.close()
    assert any(r.getMessage() == "[db] Retry 1/3: 55P03" for r in db_log.records)
