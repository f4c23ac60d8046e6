"""PostgreSQL crashing in the middle of a probe round under a running portal (issue 15, items 1 and 3).

The portal (gunicorn and a qcluster on Redis) runs on a private PostgreSQL server (tests/faults/private_pg.py),
probing three services every 5 s; one of them takes 3 s, so every round holds its claims for 3 s. Half-way
through a round the server crashes, in one of two ways:
- `pg_ctl stop -m immediate`: every backend is killed at once, no checkpoint (crash recovery at the restart);
- `kill -9` of the postmaster: its backends are orphaned and end when they notice, postmaster.pid stays behind
  (the restart waits for the orphans and clears the stale file, as an init system does).
It stays down for 20 s (longer than the retries of a round and of its release), then starts again. Asserted:
- every 5 s slot of every service, from its first probe to its last, has exactly one result: none lost to the
  claims the crashed round could not release, none lost to retries that hold a round past its slot, none
  probed twice (the round the crash interrupted, the outage's from memory, the ones after it);
- every result spooled during the outage was replayed with its own `checked_at`, to the microsecond;
- `/health/live` answered 200 throughout, and `/health/status` was JSON (200 or 503) on every poll.

Both crashes share one private cluster and one migrated template database (a fresh copy for each), so
each test spends its time on the crash, not on `migrate`.

Needs PostgreSQL's server binaries and Redis (CI has both); skipped with the reason otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from tests.conftest import requires_postgres
from tests.faults.portal import Poller, Portal, needs_redis, slot_numbers, spooled_results
from tests.faults.private_pg import PrivatePostgres, needs_private_postgres
from tests.servers import TcpServer, wait_for
from tests.tiers import worker_redis_url

REDIS_URL = worker_redis_url()  # a Redis database of this test process alone (tests/tiers.py)
INTERVAL = 5
OUTAGE_S = 20
SLOW_PROBE_S = 3  # the round the crash interrupts is this long
SERVICES = ["tcp-0", "tcp-1", "slow"]
pytestmark = [pytest.mark.faults, requires_postgres, needs_private_postgres(), needs_redis(REDIS_URL)]

CONFIG = "".join(
    f'[[service]]\nname = "{name}"\nkind = "tcp"\nhost = "127.0.0.1"\nport = {{port}}\n'
    f"interval = {INTERVAL}\ncritical = false\n\n"
    for name in SERVICES[:2]
) + (
    f'[[service]]\nname = "slow"\nkind = "command"\nargv = ["sleep", "{SLOW_PROBE_S}"]\n'
    f"interval = {INTERVAL}\ncritical = false\n"
)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrivatePostgres, TcpServer]]:
    """A private cluster with an `installed` database the portal is installed in (migrated, configured)."""
    target = TcpServer().start()
    config = tmp_path_factory.mktemp("config") / "portal.toml"
    config.write_text(CONFIG.replace("{port}", str(target.port)))
    try:
        with PrivatePostgres() as pg:
            Portal(tmp_path_factory.mktemp("install"), pg.create_database("installed")).install(config)
            yield pg, target
    finally:
        target.stop()


@pytest.mark.parametrize("crash", ["immediate", "kill -9"])
def test_it_loses_no_slot_and_doubles_none_when_its_database_crashes_mid_round(
    cluster: tuple[PrivatePostgres, TcpServer], tmp_path: Path, crash: str
) -> None:
    began = time.monotonic()
    pg, _ = cluster
    if not pg.running:  # an earlier test failed while its server was down
        pg.start()
    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    spool = tmp_path / "var" / "spool"
    poller = Poller("")
    orphans: list[int] = []
    timings: dict[str, float] = {}

    def mark(phase: str) -> None:
        timings[phase] = round(time.monotonic() - began, 1)

    url = pg.create_database(f"portal_{crash.replace(' ', '').replace('-', '')}", template="installed")
    portal = Portal(tmp_path, url, REDIS_URL=REDIS_URL, DB_BREAKER_RESET_S="5")
    try:
        poller = Poller(portal.start_web())
        portal.start_qcluster()
        poller.start()
        # Steady state: every service probed twice.
        assert wait_for(
            lambda: len(now := portal.results()) == 3 and min(map(len, now.values())) >= 2, timeout=60, interval=0.5
        ), portal.log("qcluster")[-3000:]
        mark("probing")
        # Crash half-way through the next round: its claims are held, its results not yet written.
        due = min(at for (at,) in portal.query("SELECT next_due_at FROM health_service"))
        time.sleep(max(0.0, due.timestamp() + SLOW_PROBE_S / 2 - time.time()))
        crash_at = time.time()
        if crash == "kill -9":
            orphans = pg.kill()
        else:
            pg.stop("immediate")
        time.sleep(max(0.0, crash_at + OUTAGE_S - time.time()))
        spooled = spooled_results(spool)  # what the outage left to replay, just before the restart
        pg.start()
        back_at = time.time()
        mark("restarted")

        # Three slots after the restart: every service probed in each, and the spool replayed.
        def caught_up() -> bool:
            now = portal.results()
            return all(now[name][-1].timestamp() > back_at + 3 * INTERVAL for name in SERVICES)

        wait_for(caught_up, timeout=5 * INTERVAL, interval=0.5)  # on failure, the slots below say why
        mark("caught up")
        poller.halt.set()
        final = portal.results()
        read_at = time.time()
        due = dict(portal.query("SELECT name, next_due_at FROM health_service"))
        pks = dict(portal.query("SELECT name, id FROM health_service"))
        stored = set(portal.query("SELECT service_id, checked_at FROM health_proberesult"))
    finally:
        poller.halt.set()
        portal.stop()
        r.flushdb()
    mark("whole test")
    print(f"{crash}: timings (s) {timings}; orphaned backends {orphans}")

    report, problems = [], []
    for name in SERVICES:
        served = slot_numbers(final[name], due[name], INTERVAL)
        # Every slot from the first probe to the last one that ended before the results were read.
        expected = range(served[0], slot_numbers([datetime.fromtimestamp(read_at, UTC)], due[name], INTERVAL)[0])
        missing = sorted(set(expected) - set(served))
        doubled = sorted({k for k in served if served.count(k) > 1})
        report.append(f"{name}: {len(missing)} slots missing {missing}, {len(doubled)} probed twice {doubled}")
        if missing or doubled:
            problems.append(
                f"{name} (crash {iso(crash_at)}, back {iso(back_at)}): "
                + ", ".join(f"{k}/{t.isoformat()}" for k, t in zip(served, final[name], strict=True))
            )
    print("\n".join(report))
    assert not problems, "\n".join(report + problems + [portal.log("qcluster")[-4000:]])

    # The outage's results were probed from memory, spooled, and replayed with their own checked_at.
    for name in SERVICES:
        outage = sorted(at for pk, at in spooled if pk == pks[name])
        assert len(outage) >= OUTAGE_S // INTERVAL - 1, (name, outage)
    assert not spooled - stored, sorted(spooled - stored)

    # The web face stayed up and answered JSON throughout.
    live = [code for _, path, code, _ in poller.seen if path == "/health/live"]
    assert live and all(code == 200 for code in live), live
    statuses = poller.statuses()
    assert statuses and all(code in (200, 503) and body for _, code, body in statuses), [
        (iso(at), code) for at, code, body in statuses if code not in (200, 503) or not body
    ]
