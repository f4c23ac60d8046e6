"""PostgreSQL stopped for a minute under a running portal (issue 6, "Done when").

The portal (gunicorn, 2 workers, and a qcluster on the Redis broker) runs on a private PostgreSQL server
that the test made for itself (tests/faults/private_pg.py: initdb into /tmp, its own port); the machine's
shared server is never touched. Three TCP services and a broken one with an auto-recovery action are
probed every 10 s. Once every service has been probed, the test stops the server for real
(`pg_ctl stop -m fast`: every connection is closed, nothing listens), waits 60 s, and starts it again.

Asserted, with `/health/live` and `/health/status` polled twice a second throughout:
- `/health/live` is 200 on every poll; every `/health/status` is JSON (never a 500 or an HTML page), and
  during the outage every one is a 503 with `database.status == "down"`;
- the web worker's circuit breaker is seen `open` during the outage and `closed` after it;
- no probe result is lost and none is doubled: every 10 s slot of every TCP service, from its first probe
  to its last, has exactly one result (the outage's came from the spool), each within 5 s of its slot;
  the broken service has a result in every slot too (its extra ones are its recovery's verifying probes);
- every result spooled during the outage was replayed with its own `checked_at`, to the microsecond;
- no recovery attempt is left `in_progress`, and the spool directory is empty once replayed.

Needs PostgreSQL's server binaries and Redis (CI has both); skipped with the reason otherwise.
"""

from __future__ import annotations

import time
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
OUTAGE_S = 60
INTERVAL = 10
TOLERANCE = 5  # the scheduler's cadence promise: within ±5 s of due
TCP_SERVICES = [f"tcp-{i}" for i in range(3)]
pytestmark = [pytest.mark.faults, requires_postgres, needs_private_postgres(), needs_redis(REDIS_URL)]

CONFIG = "".join(
    f'[[service]]\nname = "{name}"\nkind = "tcp"\nhost = "127.0.0.1"\nport = {{port}}\n'
    f"interval = {INTERVAL}\ncritical = false\n\n"
    for name in TCP_SERVICES
) + (
    f"""
[[service]]
name = "broken"
kind = "command"
argv = ["sh", "-c", "exit 2"]  # Nagios CRITICAL: down
interval = {INTERVAL}
failure_threshold = 1

  [[service.recovery]]
  kind = "command"
  argv = ["sleep", "3"]
  cooldown = 20
  verify_delay = 0
"""
)


def slots(times: list[datetime], due: datetime) -> list[int]:
    return slot_numbers(times, due, INTERVAL)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def test_it_survives_its_database_being_stopped_for_a_minute(tmp_path: Path) -> None:
    began = time.monotonic()
    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    target = TcpServer().start()
    config = tmp_path / "portal.toml"
    config.write_text(CONFIG.replace("{port}", str(target.port)))
    spool = tmp_path / "var" / "spool"
    poller = Poller("")
    timings: dict[str, float] = {}
    try:
        with PrivatePostgres() as pg:
            portal = Portal(
                tmp_path,
                pg.create_database("portal"),
                REDIS_URL=REDIS_URL,
                DB_BREAKER_RESET_S="5",
                RECOVERY_STALE_AFTER="60",
                Q_WORKERS="2",
            )
            try:
                portal.install(config)
                base = portal.start_web()
                portal.start_qcluster()

                def results() -> dict[str, list[datetime]]:
                    out: dict[str, list[datetime]] = {}
                    rows = portal.query(
                        "SELECT s.name, r.checked_at FROM health_proberesult r "
                        "JOIN health_service s ON s.id = r.service_id ORDER BY r.checked_at"
                    )
                    for name, at in rows:
                        out.setdefault(name, []).append(at)
                    return out

                # Steady state first: every service probed twice (its first slot and the next one on time).
                assert wait_for(
                    lambda: len(now := results()) == 4 and min(map(len, now.values())) >= 2, timeout=120, interval=1
                ), portal.log("qcluster")[-3000:]
                timings["first probes"] = time.monotonic() - began
                poller = Poller(base)
                poller.start()
                time.sleep(3)

                stop_at = time.time()
                pg.stop()  # pg_ctl stop -m fast: the portal's connections are closed, nothing listens
                down_at = time.time()
                time.sleep(max(0.0, stop_at + OUTAGE_S - time.time()))
                spooled = spooled_results(spool)  # what the outage left to replay, just before the restart
                restart_at = time.time()
                pg.start()
                back_at = time.time()
                timings["outage"] = back_at - stop_at

                def settled() -> bool:
                    late = [b for _, _, b in poller.statuses(start=back_at + 1) if b]
                    if not late or late[-1].get("database", {}).get("circuitBreaker", {}).get("state") != "closed":
                        return False
                    stuck = portal.query(
                        "SELECT count(*) FROM recovery_recoveryattempt WHERE outcome = 'in_progress' "
                        f"AND started_at < '{iso(back_at)}'"
                    )[0][0]
                    if stuck:
                        return False
                    # The qcluster writes again: every service has a result from after the outage.
                    now = results()
                    return len(now) == 4 and all(ts[-1].timestamp() > back_at for ts in now.values())

                assert wait_for(settled, timeout=90, interval=1), (
                    portal.query("SELECT id, outcome, started_at FROM recovery_recoveryattempt"),
                    poller.seen[-2:],
                    portal.log("qcluster")[-3000:],
                )
                timings["caught up"] = time.time() - back_at
                time.sleep(INTERVAL)  # one more slot after the replay
                poller.halt.set()
                poller.join(15)
                final = results()
                due = dict(portal.query("SELECT name, next_due_at FROM health_service"))
                pks = dict(portal.query("SELECT name, id FROM health_service"))
                replayed = {
                    (service, at)
                    for service, at in portal.query("SELECT service_id, checked_at FROM health_proberesult")
                }
                attempts = portal.query("SELECT outcome, started_at FROM recovery_recoveryattempt ORDER BY started_at")
                left = sorted(p.name for p in spool.iterdir()) if spool.exists() else []
            finally:
                poller.halt.set()
                portal.stop()
    finally:
        target.stop()
        r.flushdb()
    timings["whole test"] = time.monotonic() - began
    print("timings (s):", {k: round(v, 1) for k, v in timings.items()})

    # /health/live never depends on the database.
    live = [(at, code) for at, p, code, _ in poller.seen if p == "/health/live"]
    assert live and all(code == 200 for _, code in live), [x for x in live if x[1] != 200]
    # /health/status is JSON, 200 or 503, on every poll: never a 500 or an HTML error page.
    statuses = poller.statuses()
    assert statuses and all(code in (200, 503) and body for _, code, body in statuses), [
        (iso(at), code, body) for at, code, body in statuses if code not in (200, 503) or not body
    ]
    # While the server is stopped, every answer is a JSON 503 that says the database is down.
    during = poller.statuses(start=down_at, end=restart_at)
    assert len(during) >= OUTAGE_S, len(during)  # about two a second
    bad = [(iso(at), code, body) for at, code, body in during if code != 503 or body["database"]["status"] != "down"]
    assert not bad, bad[:3]
    assert all(body["status"] == "down" for _, _, body in during), during[:3]
    breaker = [b["database"]["circuitBreaker"]["state"] for _, _, b in during if "circuitBreaker" in b["database"]]
    assert "open" in breaker, breaker
    after = poller.statuses(start=back_at)
    assert after[-1][2]["database"]["status"] == "up", after[-1]
    assert after[-1][2]["database"]["circuitBreaker"]["state"] == "closed", after[-1]

    # No probe result lost, none doubled: exactly one result in every slot of every TCP service, across the
    # whole run (the outage included: those results were probed from memory, spooled, and replayed).
    for name in TCP_SERVICES:
        times = final[name]
        served = slots(times, due[name])
        context = f"{name}: stopped {iso(stop_at)}, back {iso(back_at)}; slot/result: " + ", ".join(
            f"{k}/{t.isoformat()}" for k, t in zip(served, times, strict=True)
        )
        print(context)
        assert served == list(range(served[0], served[-1] + 1)), context
        assert times[0].timestamp() < stop_at and times[-1].timestamp() > back_at + INTERVAL, context
        # The cadence promise: each probe within 5 s of its slot (the first one waits for the qcluster to start).
        lateness = [(t - due[name]).total_seconds() % INTERVAL for t in times[1:]]
        assert max(lateness) <= TOLERANCE, (name, lateness)
    # The broken service too has a result in every slot; more only by its recovery's verifying probes.
    served = slots(final["broken"], due["broken"])
    ran = [a for a in attempts if not str(a[0]).startswith("skipped")]
    assert sorted(set(served)) == list(range(served[0], served[-1] + 1)), served
    assert len(served) - len(set(served)) <= len(ran), (served, attempts)

    # The outage's results were spooled (the dispatcher kept probing on its own clock) and each came back
    # with its own checked_at, to the microsecond, not the time of the replay.
    for name in TCP_SERVICES:
        outage = sorted(at for pk, at in spooled if pk == pks[name])
        assert len(outage) >= OUTAGE_S // INTERVAL - 1, (name, outage)
        assert all(stop_at < at.timestamp() < restart_at for at in outage), (name, outage)
    missing = spooled - replayed
    assert not missing, sorted(missing)

    # Recovery: the broken service's auto-recovery really ran (so the next check means something), and no
    # attempt is left `in_progress` by the outage.
    assert ran, attempts
    stuck = [a for a in attempts if a[0] == "in_progress" and a[1].timestamp() < back_at]
    assert not stuck, attempts
    # The spool is empty once replayed: no spool file, no batch (replayed or failed), only the lock files.
    assert [name for name in left if not name.endswith(".lock")] == [], left
