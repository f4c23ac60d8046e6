"""run_due's claims: one checker per tunnel, one check per due time, no overlap of a slow check."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import requires_postgres
from tunnels import claims, watchdog
from tunnels.models import Tunnel, TunnelEvent


def quiet_tunnel(name: str = "edge", **fields) -> Tunnel:
    # max_restarts_per_hour=0: a check finds no process and is suppressed at once; nothing starts.
    values = {"command": ["/nonexistent/cloudflared"], "max_restarts_per_hour": 0, "check_interval": 30}
    values.update(fields)
    return Tunnel.objects.create(name=name, **values)


@pytest.mark.django_db
def test_it_checks_a_due_tunnel_once_and_schedules_the_next_check():
    tunnel = quiet_tunnel()
    now = timezone.now()
    results = watchdog.run_due(now)
    assert [r.tunnel for r in results] == ["edge"]
    tunnel.refresh_from_db()
    assert tunnel.next_due_at == now + timedelta(seconds=30) and tunnel.running_since is None
    assert watchdog.run_due(now + timedelta(seconds=29)) == []
    assert [r.tunnel for r in watchdog.run_due(now + timedelta(seconds=30))] == ["edge"]
    assert tunnel.events.filter(kind=TunnelEvent.Kind.PROCESS_MISSING).count() == 2


@pytest.mark.django_db
def test_it_skips_disabled_and_unnamed_tunnels():
    quiet_tunnel("one")
    quiet_tunnel("two", enabled=False)
    quiet_tunnel("three")
    assert [r.tunnel for r in watchdog.run_due(names=["one", "two"])] == ["one"]


@pytest.mark.django_db
def test_it_never_claims_a_tunnel_twice_for_one_due_time():
    tunnel = quiet_tunnel()
    now = timezone.now()
    stale_copy = Tunnel.objects.get(pk=tunnel.pk)  # what a second process read before the first claimed
    assert claims.claim(tunnel, now, due=True) == now
    claims.release(tunnel, now, elapsed=0.1)
    assert claims.claim(stale_copy, now, due=True) is None  # next_due_at moved on: that due time is taken


@pytest.mark.django_db
def test_it_does_not_overlap_a_slow_check_until_its_claim_is_stale():
    tunnel = quiet_tunnel()
    now = timezone.now()
    assert claims.claim(tunnel, now, due=True) == now
    # The check is still running when its next due time passes: no second check of it.
    later = now + timedelta(seconds=45)
    assert watchdog.run_due(later) == []
    assert watchdog.check_now(Tunnel.objects.get(pk=tunnel.pk), later) is None
    # A claim older than its longest possible check was abandoned (its process died): taken over.
    abandoned = now + claims.claim_ttl(tunnel) + timedelta(seconds=1)
    assert [r.tunnel for r in watchdog.run_due(abandoned)] == ["edge"]


@pytest.mark.django_db
def test_it_pushes_the_next_check_past_the_end_of_a_slow_one():
    tunnel = quiet_tunnel(check_interval=10)
    now = timezone.now()
    claims.claim(tunnel, now, due=True)
    claims.release(tunnel, now, elapsed=25.0)
    tunnel.refresh_from_db()
    assert tunnel.next_due_at == now + timedelta(seconds=25) and tunnel.running_since is None


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_lets_only_one_of_two_racing_processes_check_a_tunnel():
    quiet_tunnel()
    now = timezone.now()
    barrier = threading.Barrier(4)
    results: list[list] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(watchdog.run_due(now))
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert TunnelEvent.objects.filter(kind=TunnelEvent.Kind.PROCESS_MISSING).count() == 1
