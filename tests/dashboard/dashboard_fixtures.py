"""Shared data builders and clients for the dashboard tests (tests/dashboard/test_dashboard_*.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from health.models import Incident, ProbeResult, Service
from recovery.models import RecoveryAction, RecoveryAttempt
from tests import factories
from tests.factories import grant


@pytest.fixture
def staff_client(db) -> Client:
    # An operator: staff with every action's permission (staff alone only reads; tests/api/test_permissions.py).
    user = grant(get_user_model().objects.create_user("ops", password="not-a-real-password-1", is_staff=True))
    client = Client()
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def user_client(db) -> Client:
    user = get_user_model().objects.create_user("visitor", password="not-a-real-password-2")
    client = Client()
    client.force_login(user)
    return client


def make_service(name: str, *, status: str = "up", **fields) -> Service:
    """tests.factories.make_service, `up` unless said otherwise (the dashboard's pages show states)."""
    return factories.make_service(name, status=status, **fields)


def make_results(service: Service, statuses: list[str], *, end: dt.datetime | None = None, step_s: int = 60) -> None:
    """Results ending at `end` (newest last), one every `step_s` seconds, latency = 10 × position."""
    end = end or timezone.now()
    n = len(statuses)
    ProbeResult.objects.bulk_create(
        ProbeResult(
            service=service,
            checked_at=end - dt.timedelta(seconds=step_s * (n - 1 - i)),
            status=s,
            latency_ms=10.0 * (i + 1),
            detail="ok" if s != "down" else "connection refused",
        )
        for i, s in enumerate(statuses)
    )


def make_world(n: int, *, prefix: str = "svc", results_per_service: int = 3) -> list[Service]:
    """n services, each with results, every third one down with an open incident and an attempt."""
    Service.objects.bulk_create(
        Service(
            name=f"{prefix}-{i:03d}",
            kind="tcp",
            settings={"host": "127.0.0.1", "port": 9},
            status="down" if i % 3 == 0 else "up",
            last_error="connection refused" if i % 3 == 0 else "",
        )
        for i in range(n)
    )
    services = list(Service.objects.filter(name__startswith=f"{prefix}-").order_by("name"))
    now = timezone.now()
    ProbeResult.objects.bulk_create(
        ProbeResult(
            service=s,
            checked_at=now - dt.timedelta(minutes=7 * k),
            status=s.status,
            latency_ms=5.0 + k,
        )
        for s in services
        for k in range(results_per_service)
    )
    down = [s for s in services if s.status == "down"]
    Incident.objects.bulk_create(Incident(service=s, cause="connection refused") for s in down)
    actions = RecoveryAction.objects.bulk_create(
        RecoveryAction(service=s, kind="command", settings={"argv": ["true"]}) for s in down
    )
    RecoveryAttempt.objects.bulk_create(
        RecoveryAttempt(service=a.service, action=a, action_kind="command", trigger="auto", outcome="failed")
        for a in actions
    )
    return services


@pytest.fixture
def threads_may_read(transactional_db) -> Iterator[None]:
    """A transactional database the test's requests can read while a recovery thread writes it. The test
    database on SQLite is in memory with a shared cache, whose table locks fail a reader at once (no busy
    wait): read-uncommitted lets readers pass. A file database or PostgreSQL needs nothing."""
    from django.db import connection
    from django.db.backends.signals import connection_created

    def uncommitted(sender: object, connection: object, **kwargs: object) -> None:
        if connection.vendor == "sqlite":
            connection.cursor().execute("PRAGMA read_uncommitted = 1")

    connection_created.connect(uncommitted)
    connection.ensure_connection()
    uncommitted(None, connection)
    yield
    connection_created.disconnect(uncommitted)
