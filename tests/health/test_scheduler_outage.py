"""Two dispatcher loops (two clusters) during a database outage: each slot probed once, by either loop.

The database is really unwritable (tests/opsportal/outage_support.py); the loops agree through the real
Redis (REDIS_URL), on a database number of this test's own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine

from health.models import ProbeResult, Service
from health.scheduler import OUTAGE_CLAIM_PREFIX, Dispatcher, slot_start
from opsportal import db
from opsportal.spool import replay_pending
from tests.opsportal.outage_support import quick_db_hardening

REDIS_URL = "redis://127.0.0.1:6379/12"  # a Redis database number nothing else in the suite uses
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
