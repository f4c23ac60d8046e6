"""November 2026 in Europe/Berlin, built with time-machine from real probe rounds (health.runner.record), for the
SLA report's tests (tests/health/test_sla*.py, tests/dashboard/test_sla_page.py).

Berlin's November is 2026-10-31 23:00 UTC to 2026-11-30 23:00 UTC: 30 days (no DST change), so the report's
window is exactly /health/uptime's 30 d window at the month's end. A round every hour (every service's interval is
3600 s) from 2026-10-31 21:00 UTC to the month's end, except:
- the monitor gap: no round at all on 2026-11-25 (00:00-24:00 UTC), 24 rounds;
- `db` (the parent) down at 2026-10-31 22:00 UTC (still October in Berlin: not in the month) and 23:00 UTC (the
  month's first result); 2026-11-20 10:00, 11:00 (outage A); 2026-11-28 14:00, 15:00 (outage B);
- `web` (depends on db) down with it in A (its incident linked to db's), at 15:00 in B (linked: db's was open),
  on its own at 2026-11-05 08:00, and down through its maintenance window 2026-11-10 02:00-04:00 UTC (2 rounds);
- `batch` exists but is never probed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import time_machine
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from health.models import MaintenanceWindow, Service
from health.probes.base import DOWN, UP, ProbeOutcome
from health.runner import record
from tests.factories import ServiceFactory

UTC = dt.UTC
TIME_ZONE = "Europe/Berlin"
MONTH = "2026-11"
START = dt.datetime(2026, 10, 31, 23, tzinfo=UTC)
END = dt.datetime(2026, 11, 30, 23, tzinfo=UTC)
STEP = dt.timedelta(hours=1)
INTERVAL = 3600
GAP = (dt.datetime(2026, 11, 25, tzinfo=UTC), dt.datetime(2026, 11, 26, tzinfo=UTC))


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


DB_DOWN = {
    utc(2026, 10, 31, 22),
    utc(2026, 10, 31, 23),
    utc(2026, 11, 20, 10),
    utc(2026, 11, 20, 11),
    utc(2026, 11, 28, 14),
    utc(2026, 11, 28, 15),
}
WEB_DOWN = {
    utc(2026, 11, 5, 8),
    utc(2026, 11, 10, 2),
    utc(2026, 11, 10, 3),
    utc(2026, 11, 20, 10),
    utc(2026, 11, 20, 11),
    utc(2026, 11, 28, 15),
}

# What the report must say: 720 hours in the month, 696 with a result; each result stands for 60 min.
# db: 5 of 696 failed. web: 2 in maintenance, 4 of 694 failed, 3 of them in db's incidents.
EXPECTED = {
    # availability %, probed, downtime, maintenance, dependency, unknown (minutes)
    "db": (99.282, 41760.0, 300.0, 0.0, 0.0, 1440.0),
    "web": (99.424, 41640.0, 240.0, 120.0, 180.0, 1440.0),
    "batch": (None, 0.0, 0.0, 0.0, 0.0, 43200.0),
}
# SLA_EXCLUDE_DEPENDENCY_DOWNTIME=true: web's 3 failures in db's incidents leave downtime and probed time.
EXPECTED_EXCLUDED = EXPECTED | {"web": (99.855, 41460.0, 60.0, 120.0, 180.0, 1440.0)}


@dataclass
class Month:
    db: Service
    web: Service
    batch: Service
    rounds: int


def build_month() -> Month:
    """Write the month through the runner, each round at its own (travelled) time. Call inside a test that has the
    database and TIME_ZONE = Europe/Berlin (or use the `month` fixture); leaves the clock where it was."""
    with time_machine.travel(START - dt.timedelta(hours=2), tick=False) as traveller:
        db = ServiceFactory(name="db", interval=INTERVAL, failure_threshold=1)
        web = ServiceFactory(name="web", interval=INTERVAL, failure_threshold=1)
        batch = ServiceFactory(name="batch", interval=INTERVAL, enabled=False)
        web.depends_on.set([db])
        MaintenanceWindow.objects.create(
            name="web-upgrade", service=web, starts_at=utc(2026, 11, 10, 2), ends_at=utc(2026, 11, 10, 4)
        )
        rounds = 0
        when = START - dt.timedelta(hours=2)
        services = [db, web]
        while when < END:
            if not GAP[0] <= when < GAP[1]:
                traveller.move_to(when)
                outcomes = {
                    "db": ProbeOutcome(DOWN, None, "connection refused")
                    if when in DB_DOWN
                    else ProbeOutcome(UP, 3.0, "ok"),
                    "web": ProbeOutcome(DOWN, None, "HTTP 502") if when in WEB_DOWN else ProbeOutcome(UP, 5.0, "ok"),
                }
                record(services, outcomes, timezone.now())
                rounds += 1
            when += STEP
    return Month(db, web, batch, rounds)


@pytest.fixture(scope="module")
def month(django_db_setup, django_db_blocker) -> Iterator[Month]:
    """The month, built once per test module (~700 rounds) in a transaction rolled back after the module; each
    test's own transaction (pytest-django's django_db) is a savepoint inside it, so what a test writes goes too.
    Once built, every later test of the module sees the month, whether it asks for it or not."""
    with django_db_blocker.unblock(), override_settings(TIME_ZONE=TIME_ZONE), transaction.atomic():
        yield build_month()
        transaction.set_rollback(True)
