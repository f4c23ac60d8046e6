"""The dispatcher during a database outage: each slot probed once (two loops, two clusters: by either loop),
none lost to a claim the outage left unreleased, none held into the next slot by retries.

The database is really unwritable (tests/core/outage_support.py); the loops agree through the real
Redis (REDIS_URL), on a database number of this test's own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from django.db import connection

from core import db
from core.cadence import slot_start
from core.spool import default_spool, replay_pending
from dispatch.scheduler import OUTAGE_CLAIM_PREFIX, Dispatcher
from health.models import ProbeResult, Service
from tests.core.outage_support import Outage, quick_db_hardening
from tests.servers import Reply
from tests.tiers import worker_redis_url

REDIS_URL = worker_redis_url()  # a Redis database of this test process alone (tests/tiers.py)
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
INTERVAL = 10


def redis_reachable() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def shared_redis(settings, tmp_path) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    settings.REDIS_URL = REDIS_URL
    settings.AUTO_RECOVERY_ENABLED = False
    with quick_db_hardening(settings, tmp_path / "var"):
        yield client
    client.flushdb()
    client.close()


def test_it_puts_every_time_on_its_slot_of_the_grid():
    due = T0 + timedelta(seconds=3)
    assert slot_start(due, 10, T0 + timedelta(seconds=3)) == due
    assert slot_start(due, 10, T0 + timedelta(seconds=12.9)) == due
    assert slot_start(due, 10, T0 + timedelta(seconds=13)) == due + timedelta(seconds=10)
    assert slot_start(due - timedelta(seconds=30), 10, T0 + timedelta(seconds=14)) == due + timedelta(seconds=10)


@pytest.mark.skipif(not redis_reachable(), reason=f"needs Redis at {REDIS_URL} (CI starts one)")
@pytest.mark.django_db(transaction=True)
def test_it_probes_each_slot_once_across_two_loops_during_an_outage(tcp_server, shared_redis, outage):
    service = Service.objects.create(
        name="web",
        kind="tcp",
        settings={"host": "127.0.0.1", "port": tcp_server.port},
        interval=INTERVAL,
        timeout=2,
        next_due_at=T0,
    )
    a, b = Dispatcher(owner="resident@a:1:x"), Dispatcher(owner="resident@b:2:y")
    with time_machine.travel(T0, tick=False) as clock:
        served = len(a.pass_once()) + len(b.pass_once())  # both learn the service; one of them probes T0
        outage.start()
        for k in (1, 2, 3):  # 30 s away; the loops pass in either order within each slot
            clock.move_to(T0 + timedelta(seconds=INTERVAL * k + 0.5))
            first, second = (a, b) if k % 2 else (b, a)
            first.pass_once()
            second.pass_once()
        assert a.outage_passes == b.outage_passes == 3
        outage.end()
        clock.move_to(T0 + timedelta(seconds=4 * INTERVAL + 0.5))
        served += len(b.pass_once()) + len(a.pass_once())  # back: the slot after the outage, once
        replay_pending()
    db.reset_breaker()
    times = sorted(ProbeResult.objects.filter(service=service).values_list("checked_at", flat=True))
    slots = [math.floor((t - T0).total_seconds() / INTERVAL) for t in times]
    assert served == 2  # T0 and T0 + 40 claimed through the database, by one loop each
    assert slots == [0, 1, 2, 3, 4]  # each slot once: the outage's three by whichever loop won it in Redis
    assert len(list(shared_redis.scan_iter(f"{OUTAGE_CLAIM_PREFIX}*"))) == 3


@pytest.mark.django_db(transaction=True)
def test_it_probes_anyway_when_redis_is_away_too(tcp_server, settings, tmp_path, outage):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: a duplicate beats a gap
    settings.AUTO_RECOVERY_ENABLED = False
    with quick_db_hardening(settings, tmp_path / "var"):
        Service.objects.create(
            name="web",
            kind="tcp",
            settings={"host": "127.0.0.1", "port": tcp_server.port},
            interval=INTERVAL,
            next_due_at=T0,
        )
        a, b = Dispatcher(), Dispatcher()
        with time_machine.travel(T0, tick=False) as clock:
            a.pass_once()
            b.pass_once()
            outage.start()
            clock.move_to(T0 + timedelta(seconds=INTERVAL + 0.5))
            a.pass_once()
            b.pass_once()
            outage.end()
            replay_pending()
        db.reset_breaker()
        assert ProbeResult.objects.count() == 3  # T0 once; T0 + 10 by both loops


def going_away(outage) -> Callable[[dict], Reply]:
    """An HTTP handler that answers 200 after taking the database away: it goes mid-round, after the claim."""

    def handler(request: dict) -> Reply:
        outage.start()
        return Reply(200, "ok")

    return handler


@pytest.mark.django_db(transaction=True)
def test_it_re_takes_its_own_claims_at_once_when_the_database_returns(http_server, settings, tmp_path, outage):
    settings.AUTO_RECOVERY_ENABLED = False
    with quick_db_hardening(settings, tmp_path / "var"):
        service = Service.objects.create(
            name="web", kind="http", settings={"url": http_server.url + "/"}, interval=INTERVAL, next_due_at=T0
        )
        http_server.handler = going_away(outage)
        loop = Dispatcher()
        with time_machine.travel(T0, tick=False) as clock:
            assert [s.pk for s in loop.pass_once()] == [service.pk]  # T0 probed; spooled, its claim not released
            http_server.handler = None
            outage.end()
            held = Service.objects.get(pk=service.pk)
            assert (held.claimed_by, held.next_due_at) == (loop.owner, T0)
            # The next slot: the claim is far from stale (timeout + 60 s), yet this loop knows its round ended.
            clock.move_to(T0 + timedelta(seconds=INTERVAL + 0.5))
            claimed = loop.pass_once()
            clock.move_to(T0 + timedelta(seconds=2 * INTERVAL + 0.5))
            claimed += loop.pass_once()
        db.reset_breaker()
        assert [s.due for s in claimed] == [T0 + timedelta(seconds=INTERVAL * k) for k in (1, 2)]
        times = sorted(ProbeResult.objects.filter(service=service).values_list("checked_at", flat=True))
        assert [math.floor((t - T0).total_seconds() / INTERVAL) for t in times] == [0, 1, 2]  # none lost, none twice
        assert Service.objects.get(pk=service.pk).running_since is None and not loop.unreleased


@pytest.mark.slow("a round held by retries to the end of its slot")
@pytest.mark.django_db(transaction=True)
def test_it_spools_a_round_at_the_end_of_its_slot_instead_of_retrying_into_the_next(
    http_server, settings, tmp_path, outage
):
    settings.AUTO_RECOVERY_ENABLED = False
    with quick_db_hardening(settings, tmp_path / "var"):
        settings.DB_RETRY_BACKOFF_MS = 1_000  # the default: 1 + 2 + 4 s of backoff for the write, and the release
        Service.objects.create(
            name="web", kind="http", settings={"url": http_server.url + "/"}, interval=INTERVAL, next_due_at=T0
        )
        http_server.handler = going_away(outage)
        loop = Dispatcher(executor=ThreadPoolExecutor(2))  # the round in its own thread, as in a qcluster
        # The round starts late: 1.5 s are left in its slot, room for the first backoff (1 s) and no more.
        with time_machine.travel(T0 + timedelta(seconds=INTERVAL - 1.5), tick=False):
            started = time.monotonic()
            (claimed,) = loop.pass_once()
            loop.inflight[claimed.pk].result(timeout=30)
            took = time.monotonic() - started
            loop.executor.shutdown(wait=True)
        http_server.handler = None
        assert claimed.due == T0
        # One backoff, then spooled and done, so the next slot is probed on time (before the fix: 7 s and more).
        assert 1.0 <= took < 3.5, took
        assert default_spool().pending() and loop.unreleased == {claimed.pk}
        assert loop.outage_booked == {claimed.pk: T0 + timedelta(seconds=INTERVAL)}
        outage.end()
        assert replay_pending() == 1
        db.reset_breaker()
        checked = list(ProbeResult.objects.values_list("checked_at", flat=True))
        assert checked == [T0 + timedelta(seconds=INTERVAL - 1.5)]  # replayed with its own time


def outage_at(outage: Outage, pick: Callable[[str], bool], after: int = 0) -> Callable:
    """An execute wrapper that takes the database away just before the statement after `after` that `pick`
    matches: the outage lands inside a pass, between two of its autocommitted writes. An Outage starts once:
    a second outage in a test needs an Outage of its own."""
    seen = [0]

    def wrapper(execute, sql, params, many, context):
        if pick(sql):
            seen[0] += 1
            if seen[0] == after + 1:
                outage.start()
        return execute(sql, params, many, context)

    return wrapper


def is_claim(sql: str) -> bool:
    return sql.startswith('UPDATE "health_service"') and '"claimed_by"' in sql and '"running_since" = NULL' not in sql


def is_release(sql: str) -> bool:
    return sql.startswith('UPDATE "health_service"') and '"running_since" = NULL' in sql


def probed_slots(service: Service) -> list[int]:
    times = sorted(ProbeResult.objects.filter(service=service).values_list("checked_at", flat=True))
    return [math.floor((t - T0).total_seconds() / INTERVAL) for t in times]


@pytest.mark.django_db(transaction=True)
def test_it_re_takes_the_claims_a_pass_wrote_before_the_database_went_away(tcp_server, settings, tmp_path, outage):
    settings.AUTO_RECOVERY_ENABLED = False
    with quick_db_hardening(settings, tmp_path / "var"):
        services = [
            Service.objects.create(
                name=f"web{k}",
                kind="tcp",
                settings={"host": "127.0.0.1", "port": tcp_server.port},
                interval=INTERVAL,
                timeout=2,
                next_due_at=T0,
            )
            for k in range(3)
        ]
        loop = Dispatcher()
        with time_machine.travel(T0, tick=False) as clock:
            # Two claims are written, then the database goes away: the pass probes all three from memory.
            with connection.execute_wrapper(outage_at(outage, is_claim, after=2)):
                assert loop.pass_once() == []
            assert outage.started.is_set() and loop.outage_passes == 1
            outage.end()
            held = sorted(Service.objects.filter(claimed_by=loop.owner).values_list("pk", flat=True))
            assert held == [s.pk for s in services[:2]]  # this loop's claims, of a round that never ran
            clock.move_to(T0 + timedelta(seconds=0.5))
            assert loop.pass_once() == []  # T0 is in the spool: every claim books T0 + 10 instead
            clock.move_to(T0 + timedelta(seconds=INTERVAL + 0.5))
            claimed = loop.pass_once()  # not held back until the claims go stale (timeout + 60 s)
            replay_pending()
        db.reset_breaker()
        assert sorted((s.pk, s.due) for s in claimed) == [(s.pk, T0 + timedelta(seconds=INTERVAL)) for s in services]
        assert [probed_slots(s) for s in services] == [[0, 1]] * 3  # none lost, none twice
        assert not Service.objects.exclude(running_since=None).exists()
        assert not loop.unreleased and not loop.outage_booked


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_outage_booking_when_its_release_fails(tcp_server, settings, tmp_path, outage):
    settings.AUTO_RECOVERY_ENABLED = False
    with quick_db_hardening(settings, tmp_path / "var"):
        service = Service.objects.create(
            name="web",
            kind="tcp",
            settings={"host": "127.0.0.1", "port": tcp_server.port},
            interval=INTERVAL,
            timeout=2,
            next_due_at=T0,
        )
        loop = Dispatcher()
        with time_machine.travel(T0, tick=False) as clock:
            assert len(loop.pass_once()) == 1  # T0, through the database
            outage.start()
            clock.move_to(T0 + timedelta(seconds=INTERVAL + 0.5))
            loop.pass_once()  # T0 + 10 from memory: the database still names it, T0 + 20 is booked
            outage.end()
            clock.move_to(T0 + timedelta(seconds=INTERVAL + 1))
            # Back: the claim of T0 + 10 is written, and the database goes away before it can book T0 + 20.
            again = Outage()
            try:
                with connection.execute_wrapper(outage_at(again, is_release)):
                    assert loop.pass_once() == []
                assert again.started.is_set() and loop.outage_passes == 2  # the outage of T0 + 10, then this one
            finally:
                again.end()
            assert loop.outage_booked == {service.pk: T0 + timedelta(seconds=2 * INTERVAL)}
            clock.move_to(T0 + timedelta(seconds=INTERVAL + 1.5))
            assert loop.pass_once() == []  # re-taken at once, T0 + 20 booked; T0 + 10 not probed again
            assert Service.objects.get(pk=service.pk).next_due_at == T0 + timedelta(seconds=2 * INTERVAL)
            clock.move_to(T0 + timedelta(seconds=2 * INTERVAL + 0.5))
            claimed = loop.pass_once()
            replay_pending()
        db.reset_breaker()
        assert [s.due for s in claimed] == [T0 + timedelta(seconds=2 * INTERVAL)]
        assert probed_slots(service) == [0, 1, 2]
        assert not loop.unreleased and not loop.outage_booked
