"""Two dispatchers (threads with their own connections) racing on one PostgreSQL claim each due service once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime

import pytest
from django.db import connections
from django.utils import timezone

from dispatch.scheduler import beat, claim_due, finish
from health.models import Service
from tests.conftest import requires_postgres

SERVICES = 40
ROUNDS = 5


def race(now: datetime) -> tuple[dict[str, list[int]], list[BaseException]]:
    """Start two claimers at the same instant; each uses its own connection (closed when done)."""
    start = threading.Barrier(2)
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def dispatcher(name: str) -> None:
        try:
            beat(now, name)  # as a loop does before it claims: its claims are a live loop's
            start.wait()
            claimed = claim_due(now, name)
            claims[name] = [s.pk for s in claimed]
            finish(claimed, now)
        except BaseException as exc:  # surfaced by the caller: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=dispatcher, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return claims, errors


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_claims_each_due_service_once_when_two_dispatchers_race():
    Service.objects.bulk_create(
        Service(name=f"svc-{n}", kind="tcp", settings={"host": "127.0.0.1", "port": 9}, interval=10)
        for n in range(SERVICES)
    )
    for _ in range(ROUNDS):
        now = timezone.now()
        Service.objects.update(next_due_at=now, running_since=None)  # every service due, for this one slot
        claims, errors = race(now)
        assert errors == []
        counts = Counter(claims["a"] + claims["b"])
        assert len(counts) == SERVICES  # every due service was claimed …
        assert set(counts.values()) == {1}  # … by exactly one of the two
        assert not Service.objects.filter(running_since__isnull=False).exists()
