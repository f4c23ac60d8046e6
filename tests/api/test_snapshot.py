"""api.snapshot: one computation at a time, stale-while-revalidate, and the status and metrics views on it.

The Snapshot tests use real threads and a hand-driven clock (ages are set, not waited for); the view tests
turn STATUS_CACHE_SECONDS on (tests/conftest.py turns it off for the rest of the suite).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.base import status_payload
from api.metrics import database_snapshot, exposition
from api.snapshot import STALE_FACTOR, Snapshot, status_snapshot
from core import db
from tests.api.api_support import make_service, unreachable_database
from tests.conftest import requires_postgres
from tests.core.conftest import fast_db_hardening  # noqa: F401 — a fixture of tests/opsportal, used below
from tests.core.outage_support import unwritable

TTL = 10.0
WAIT_S = 10  # a bound on waiting for threads, never an assertion about speed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A computation returning 1, 2, 3, …; each call can be held until released, and made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail: Exception | None = None

    def __call__(self) -> int:
        self.calls += 1
        self.started.set()
        assert self.release.wait(WAIT_S)
        if self.fail is not None:
            raise self.fail
        return self.calls


def until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def run_concurrently(snapshot: Snapshot, n: int) -> tuple[list[object], list[threading.Thread]]:
    """n threads call get(); returns their values or exceptions, in no particular order."""
    results: list[object] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            value: object = snapshot.get()
        except Exception as exc:
            value = exc
        with lock:
            results.append(value)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    return results, threads


def held_then_released(snapshot: Snapshot, compute: Counting, n: int) -> list[object]:
    """n callers arrive while the first computation is held; it is released once the other n-1 wait on it."""
    compute.release.clear()
    results, threads = run_concurrently(snapshot, n)
    assert compute.started.wait(WAIT_S)
    assert until(lambda: snapshot.waiting == n - 1), snapshot.waiting
    compute.release.set()
    for t in threads:
        t.join(WAIT_S)
    return results


@pytest.fixture
def compute() -> Counting:
    return Counting()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def snapshot(compute: Counting, clock: Clock) -> Snapshot[int]:
    return Snapshot(compute, TTL, clock=clock, name="test")


def test_it_computes_once_for_concurrent_callers(snapshot, compute):
    results = held_then_released(snapshot, compute, 16)
    assert results == [1] * 16
    assert compute.calls == 1


def test_it_serves_the_kept_value_within_the_ttl(snapshot, compute, clock):
    assert snapshot.get() == 1
    clock.now += TTL - 0.1
    assert [snapshot.get() for _ in range(5)] == [1] * 5
    assert compute.calls == 1


def test_it_serves_the_stale_value_while_one_background_refresh_runs(snapshot, compute, clock):
    assert snapshot.get() == 1
    clock.now += TTL + 0.1
    compute.release.clear()  # the refresh is held: a caller that waited for it could not return
    assert [snapshot.get() for _ in range(5)] == [1] * 5
    assert compute.started.wait(WAIT_S)
    compute.release.set()
    assert snapshot.settle(WAIT_S)
    assert compute.calls == 2  # one refresh for five stale reads
    assert snapshot.get() == 2


def test_it_refreshes_in_another_thread_than_the_caller(clock):
    threads: list[str] = []
    snap = Snapshot(lambda: threads.append(threading.current_thread().name) or len(threads), TTL, clock=clock)
    snap.get()
    clock.now += TTL + 0.1
    snap.get()
    assert snap.settle(WAIT_S)
    assert threads[0] == threading.current_thread().name
    assert threads[1] != threading.current_thread().name


def test_it_does_not_serve_a_value_older_than_the_hard_bound(snapshot, compute, clock):
    assert snapshot.get() == 1
    clock.now += TTL * STALE_FACTOR + 0.1
    assert snapshot.get() == 2  # computed for this caller, not the old value
    assert compute.calls == 2


def test_it_does_not_keep_a_failed_computation_and_raises_it_to_every_waiter(snapshot, compute):
    compute.fail = RuntimeError("database said no")
    results = held_then_released(snapshot, compute, 4)
    assert len(results) == 4 and all(isinstance(r, RuntimeError) for r in results)
    assert compute.calls == 1
    compute.fail = None
    assert snapshot.get() == 2  # nothing was kept: computed again
    assert compute.calls == 2


def test_it_keeps_the_stale_value_when_a_background_refresh_fails(snapshot, compute, clock):
    assert snapshot.get() == 1
    clock.now += TTL + 0.1
    compute.fail = RuntimeError("database said no")
    assert snapshot.get() == 1
    assert snapshot.settle(WAIT_S)
    assert snapshot.get() == 1  # still the old value, and another refresh is tried
    assert snapshot.settle(WAIT_S)
    assert compute.calls == 3
    compute.fail = None
    snapshot.get()
    assert snapshot.settle(WAIT_S)
    assert snapshot.get() == 4


def test_it_answers_but_never_keeps_a_value_it_is_told_not_to(compute):
    snap = Snapshot(compute, TTL, cacheable=lambda value: value >= 2)
    assert snap.get() == 1
    assert snap.get() == 2
    assert snap.get() == 2
    assert compute.calls == 2


def test_it_computes_on_every_call_with_a_zero_ttl(compute):
    snap = Snapshot(compute, 0)
    assert [snap.get() for _ in range(3)] == [1, 2, 3]


def test_it_reads_the_ttl_on_every_call(compute):
    ttl = [0.0]
    snap = Snapshot(compute, lambda: ttl[0])
    assert snap.get() == 1
    ttl[0] = TTL
    assert snap.get() == 2
    assert snap.get() == 2


def test_it_runs_the_cleanup_after_a_background_refresh(compute, clock):
    cleaned = threading.Event()
    snap = Snapshot(compute, TTL, cleanup=cleaned.set, clock=clock)
    snap.get()
    assert not cleaned.is_set()  # a caller's own computation leaves its thread alone
    clock.now += TTL + 0.1
    snap.get()
    assert cleaned.wait(WAIT_S)


# --- the views ---------------------------------------------------------------------


@pytest.fixture
def status_cache(settings) -> Iterator[None]:
    settings.STATUS_CACHE_SECONDS = 60  # long enough that nothing in a test goes stale
    status_snapshot.clear()
    database_snapshot.clear()
    yield
    status_snapshot.clear()
    database_snapshot.clear()


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


@pytest.mark.django_db
def test_it_serves_status_from_the_snapshot_with_the_database_live(client, status_cache):
    make_service("api", status="up")
    first = client.get("/health/status")
    fresh = status_payload()
    computed = status_snapshot.computations
    second = client.get("/health/status")
    assert status_snapshot.computations == computed  # nothing changed: served from the snapshot
    assert first.status_code == second.status_code == 200
    assert second["Content-Type"] == "application/json" and second["Cache-Control"] == "no-store"
    body = second.json()
    assert list(body["services"]) == ["api"]
    assert body["status"] == "healthy"
    assert body["timestamp"] > first.json()["timestamp"]  # per request
    assert body["database"]["status"] == "up" and body["database"]["circuitBreaker"]["state"] == "closed"
    # The keys and values status_payload() builds, in its order, bar the per-request parts.
    assert list(body) == list(fresh)
    for key in ("timestamp", "database"):
        body.pop(key), fresh.pop(key)
    assert body == fresh


@pytest.mark.django_db
def test_it_encodes_the_cached_status_as_status_payload_would(client, status_cache):
    make_service("api", status="up", last_latency_ms=12.5, last_detail='HTTP 200 "ok" é')
    client.get("/health/status")
    response = client.get("/health/status")
    body = json.loads(response.content)
    from django.core.serializers.json import DjangoJSONEncoder

    assert response.content == json.dumps(body, cls=DjangoJSONEncoder).encode()


@pytest.mark.django_db
def test_it_serves_health_json_from_the_snapshot(client, status_cache):
    make_service("api", status="up")
    client.get("/health/status")
    response = client.get("/health/status", HTTP_ACCEPT="application/health+json")
    assert response["Content-Type"] == "application/health+json"
    assert response.json()["checks"]["portalDatabase:responseTime"][0]["status"] == "pass"


@pytest.mark.django_db
def test_it_reads_status_per_request_when_the_cache_is_off(client, settings):
    settings.STATUS_CACHE_SECONDS = 0
    make_service("api", status="up")
    client.get("/health/status")
    make_service("late", status="up")
    assert list(client.get("/health/status").json()["services"]) == ["api", "late"]


@pytest.mark.django_db
def test_it_answers_status_503_down_when_the_database_is_unreachable_with_the_cache_on(client, status_cache):
    make_service("api", status="up")
    assert client.get("/health/status").status_code == 200  # the snapshot holds an `up` answer
    with unreachable_database():
        response = client.get("/health/status")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "down"
    assert body["database"]["status"] == "down"
    assert body["services"] == {}
    assert "services" in body["unavailable"]


@requires_postgres
@pytest.mark.usefixtures("fast_db_hardening")
@pytest.mark.django_db(transaction=True)
def test_it_answers_status_503_down_at_once_when_postgresql_is_unwritable_with_the_cache_on(client, status_cache):
    make_service("api", status="up")
    assert client.get("/health/status").status_code == 200
    with unwritable():
        response = client.get("/health/status")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["database"]["status"] == "down"
    assert "circuitBreaker" in body["database"]
    assert body["unavailable"] == ["services", "tunnels", "incidents", "recovery", "scheduler"]


@pytest.mark.django_db
def test_it_serves_metrics_from_the_snapshot_with_live_breaker_gauges(client, status_cache):
    make_service("api", status="up")
    first = client.get("/metrics").content.decode()
    assert metric(first, "opsportal_database_circuit_breaker_state", state="closed") == 1
    assert metric(first, "opsportal_database_up") == 1
    computed = database_snapshot.computations
    try:
        db.breaker.open()
        opened = client.get("/metrics").content.decode()
    finally:
        db.breaker.close()
    # This process's breaker, read per scrape; open, the database check fails and nothing kept is served.
    assert metric(opened, "opsportal_database_circuit_breaker_state", state="open") == 1
    assert metric(opened, "opsportal_database_circuit_breaker_state", state="closed") == 0
    assert metric(opened, "opsportal_service_up", service="api", kind="tcp", critical="true") == 1
    closed = client.get("/metrics").content.decode()
    assert metric(closed, "opsportal_database_circuit_breaker_state", state="closed") == 1
    assert metric(closed, "opsportal_database_circuit_breaker_state", state="open") == 0
    assert metric(closed, "opsportal_database_up") == 1
    assert metric(closed, "opsportal_service_up", service="api", kind="tcp", critical="true") == 1
    assert database_snapshot.computations == computed  # the kept part: nothing changed


@pytest.mark.django_db
def test_it_joins_the_cached_metrics_into_the_bytes_exposition_makes(client, status_cache):
    make_service("api", status="up", last_latency_ms=3.0)
    client.get("/metrics")
    assert client.get("/metrics").content == exposition()


@pytest.mark.django_db
def test_it_answers_metrics_database_down_when_unreachable_with_the_cache_on(client, status_cache):
    make_service("api", status="up")
    client.get("/metrics")
    with unreachable_database():
        text = client.get("/metrics").content.decode()
    assert metric(text, "opsportal_database_up") == 0
    assert metric(text, "opsportal_service_up", service="api", kind="tcp", critical="true") is None


# --- versions (issue 15 item 10): a committed change is never answered from an older snapshot ------------


def test_it_computes_again_at_a_new_version_within_the_ttl(snapshot, compute, clock):
    assert snapshot.get("v1") == 1
    assert snapshot.get("v1") == 1  # the version holds: the kept value
    assert snapshot.get("v2") == 2  # a change committed since: computed, though well within the ttl
    clock.now += TTL + 0.1
    assert snapshot.get("v1") == 3  # an older version than the kept one is not current either
    assert snapshot.settle(WAIT_S)
    assert compute.calls == 3


def test_it_serves_a_stale_value_only_while_its_version_holds(snapshot, compute, clock):
    assert snapshot.get("v1") == 1
    clock.now += TTL + 0.1
    compute.release.clear()
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(snapshot.get("v2")))
    caller.start()
    assert compute.started.wait(WAIT_S)
    assert until(lambda: compute.calls == 2)
    caller.join(0.2)
    assert caller.is_alive()  # it waits for the new version's value instead of taking the stale one
    compute.release.set()
    caller.join(WAIT_S)
    assert results == [2]


def test_it_never_hands_a_caller_a_computation_that_started_before_it_asked_at_another_version(clock):
    compute = Counting()
    snap = Snapshot(compute, TTL, clock=clock, name="test")
    compute.release.clear()
    first: list[object] = []
    leader = threading.Thread(target=lambda: first.append(snap.get("v1")))
    leader.start()
    assert compute.started.wait(WAIT_S)  # the v1 computation runs: it read the state before v2 was committed
    clock.now += 0.001
    later: list[object] = []
    follower = threading.Thread(target=lambda: later.append(snap.get("v2")))
    follower.start()
    assert until(lambda: snap.waiting == 1)
    compute.release.set()
    leader.join(WAIT_S)
    follower.join(WAIT_S)
    assert first == [1]
    assert later == [2]  # computed after it asked, not the v1 value it waited behind
    assert compute.calls == 2


def test_it_shares_one_computation_among_callers_of_one_version(clock):
    compute = Counting()
    snap = Snapshot(compute, TTL, clock=clock, name="test")
    compute.release.clear()
    results: list[object] = []
    lock = threading.Lock()

    def call() -> None:
        value = snap.get("v1")
        with lock:
            results.append(value)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    assert until(lambda: snap.waiting == 7)
    compute.release.set()
    for t in threads:
        t.join(WAIT_S)
    assert results == [1] * 8 and compute.calls == 1


@pytest.mark.django_db
def test_it_moves_the_state_version_with_every_change_the_answers_show(django_assert_num_queries):
    from django.utils import timezone

    from api.snapshot import state_version
    from core.models import SchedulerHeartbeat
    from dispatch.scheduler import HEARTBEAT
    from health.models import Incident, ProbeResult, Service
    from recovery.models import RecoveryAttempt, RecoveryState
    from tunnels.models import Tunnel, TunnelEvent

    api = make_service("api", status="up")
    with django_assert_num_queries(1):
        version = state_version()
    assert state_version() == version  # nothing changed: the same version
    now = timezone.now()
    seen = [version]
    changes = [
        # A round writes with a plain UPDATE (bulk_set): no auto_now, but last_checked_at moves.
        lambda: Service.objects.filter(pk=api.pk).update(status="down", last_checked_at=now),
        lambda: Service.objects.get(pk=api.pk).set_paused(True),  # saves with updated_at
        # A spooled round replayed late: its result rows carry an older time than the newest check.
        lambda: ProbeResult.objects.create(service=api, status="up", checked_at=now - timedelta(hours=1)),
        lambda: make_service("new"),
        lambda: Incident.objects.create(service=api, cause="refused"),
        lambda: Incident.objects.filter(service=api).update(resolved_at=timezone.now()),
        lambda: SchedulerHeartbeat.objects.create(name=HEARTBEAT, last_run_at=timezone.now()),
        lambda: SchedulerHeartbeat.objects.filter(name=HEARTBEAT).update(last_run_at=timezone.now()),
        lambda: RecoveryAttempt.objects.create(service=api, trigger="auto"),
        lambda: RecoveryAttempt.objects.filter(service=api).update(outcome="succeeded", finished_at=timezone.now()),
        lambda: RecoveryState.objects.create(service=api, escalated_at=timezone.now()),
        lambda: Tunnel.objects.create(name="main", command=["true"]),
        lambda: Tunnel.objects.filter(name="main").update(status="down", updated_at=timezone.now()),
        lambda: TunnelEvent.objects.create(tunnel=Tunnel.objects.get(), kind="restarted"),
        lambda: Service.objects.filter(name="new").delete(),
    ]
    for n, change in enumerate(changes):
        change()
        version = state_version()
        assert version not in seen, n
        seen.append(version)


@pytest.mark.django_db
def test_it_answers_a_change_committed_after_the_snapshot_at_once(client, status_cache):
    from django.utils import timezone

    from health.models import Service

    make_service("api", status="up")
    make_service("db", status="up")
    assert client.get("/health/status").status_code == 200
    assert client.get("/metrics").status_code == 200
    # As a probe round writes it (a plain UPDATE): the next answer shows it, long before the 60 s ttl.
    Service.objects.filter(name="db").update(
        status="down", state_type="hard", consecutive_failures=2, last_checked_at=timezone.now()
    )
    response = client.get("/health/status")
    assert response.status_code == 503
    assert response.json()["services"]["db"]["status"] == "down"
    text = client.get("/metrics").content.decode()
    assert metric(text, "opsportal_service_up", service="db", kind="tcp", critical="true") == 0
    assert metric(text, "opsportal_status", status="down") == 1
