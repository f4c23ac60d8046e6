"""Scale-out: two real qcluster processes on one PostgreSQL database and one Redis share the probing.

Every due slot of every service is probed exactly once while both run; one cluster is then killed
with SIGKILL (a host that dies) while it holds a claim — a round in flight — and the other carries every
service within one interval: the dead loop's claimed slot is taken over (it stops beating) and probed
late but within its slot, and no slot is lost or probed twice. While both run, `manage.py doctor` is green
and names both clusters' dispatcher loops (docs/deploy.md's end state). PostgreSQL + Redis only: the embedded
SQLite set-up runs one qcluster by design.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import requires_postgres
from tests.faults.portal import needs_redis, own_database
from tests.servers import HttpServer, Reply, wait_for
from tests.tiers import worker_redis_url

BASE_DIR = Path(__file__).resolve().parents[2]
SCALE_DB = "test_h10_scale"
REDIS_URL = worker_redis_url()  # a Redis database of this test process alone (tests/tiers.py)
SERVICES = 4
INTERVAL = 10  # seconds: the shortest interval the scheduler promises (10 s … 24 h)
TOLERANCE = 5  # the scheduler's cadence promise: within ±5 s of due
STEADY_S = 45  # both clusters running, after the first probes
# Every qcluster runs a resident dispatcher loop, so the survivor already has one: every service is probed
# again within one interval of the kill, the claimed one included (its claim is taken over once the dead
# loop has not beaten for dispatch.scheduler.OWNER_DEAD_S, 6 s).
TAKEOVER_BOUND_S = INTERVAL
AFTER_KILL_S = 4 * INTERVAL  # the takeover, then a few slots to check the cadence
REPLY_DELAY_S = 1.5  # each round takes this long, so a cluster can be caught holding a claim


pytestmark = [pytest.mark.faults, requires_postgres, needs_redis(REDIS_URL)]


@pytest.fixture
def exclusive() -> Iterator[redis.Redis]:
    """One run of this test at a time on this machine: two would share the Redis queue (and database)."""
    client = redis.Redis.from_url(REDIS_URL)
    lock = client.lock("opsportal-tests:scale-out", timeout=900, blocking_timeout=600)
    assert lock.acquire(), "another run of the scale-out test held its Redis lock for 10 minutes"
    try:
        yield client
    finally:
        with contextlib.suppress(redis.exceptions.LockNotOwnedError):  # expired, or the db was flushed
            lock.release()
        client.close()


@pytest.fixture
def scale_db(exclusive: redis.Redis, tmp_path: Path) -> Iterator[str]:
    """A database of our own on the suite's PostgreSQL server, dropped afterwards."""
    with own_database(tmp_path, SCALE_DB) as url:
        yield url


@pytest.fixture
def scale_redis(exclusive: redis.Redis) -> Iterator[str]:
    """The test's Redis database, emptied before and after (but for the lock, which is released last)."""

    def clear() -> None:
        keys = [k for k in exclusive.scan_iter() if not k.startswith(b"opsportal-tests:")]
        if keys:
            exclusive.delete(*keys)

    clear()
    yield REDIS_URL
    clear()


class Clusters:
    """Real `manage.py qcluster` processes, each in its own session so it can be killed whole."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen] = []

    def start(self, n: int) -> None:
        for i in range(n):
            log = (self.logs / f"qcluster-{i}.log").open("w")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "qcluster"],
                    cwd=BASE_DIR,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def kill(self, i: int) -> None:
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Whatever is left of the session (a stuck worker, a probe child) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True, timeout=300)


def results(url: str) -> dict[str, list[datetime]]:
    """Every probe result's time, by service name, oldest first."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT s.name, r.checked_at FROM health_proberesult r JOIN health_service s ON s.id = r.service_id "
            "ORDER BY r.checked_at"
        ).fetchall()
    out: dict[str, list[datetime]] = {}
    for name, checked_at in rows:
        out.setdefault(name, []).append(checked_at)
    return out


def wait_for_a_claim(url: str, clusters: Clusters, timeout: float) -> tuple[int, str] | None:
    """(cluster index, service) of a claim held right now: the owner is `resident@host:<qcluster pid>:nonce`."""
    pids = {proc.pid: i for i, proc in enumerate(clusters.procs)}
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            for name, owner in conn.execute(
                "SELECT name, claimed_by FROM health_service WHERE running_since IS NOT NULL AND claimed_by <> ''"
            ).fetchall():
                pid = int(owner.split(":")[-2])
                if pid in pids:
                    return pids[pid], name
            time.sleep(0.05)
    return None


def next_due(url: str) -> dict[str, datetime]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT name, next_due_at FROM health_service").fetchall())


def slots(times: list[datetime], due: datetime) -> list[int]:
    """The due slot each probe served. Slots are `due + k * INTERVAL` exactly (the scheduler books the next
    slot from the last due time, never from `now`), and a probe starts at or after its slot, within it."""
    return [math.floor((t - due).total_seconds() / INTERVAL) for t in times]


def lateness(times: list[datetime], due: datetime) -> float:
    return max((t - due).total_seconds() % INTERVAL for t in times)


def gaps(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]


def test_it_shares_the_probing_between_two_qclusters_and_survives_losing_one(
    scale_db: str, scale_redis: str, tmp_path: Path
) -> None:
    target = HttpServer().start()
    target.reply = Reply(200, "ok", delay=REPLY_DELAY_S)
    env = {
        **{k: v for k, v in os.environ.items() if k != "TEST_DATABASE_NAME" and not k.startswith("DJANGO_")},
        "DATABASE_URL": scale_db,
        "REDIS_URL": scale_redis,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
        "LOG_DIR": str(tmp_path / "logs"),
        "AUTO_RECOVERY_ENABLED": "false",
        "Q_WORKERS": "2",
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    config = tmp_path / "services.toml"
    config.write_text(
        "".join(
            f'[[service]]\nname = "svc-{i}"\nkind = "http"\nurl = "{target.url}/svc-{i}"\n'
            f"interval = {INTERVAL}\ntimeout = 2\n\n"
            for i in range(SERVICES)
        )
    )
    clusters = Clusters(env, tmp_path)
    try:
        manage(env, "migrate", "-v0")
        manage(env, "importconfig", str(config))
        manage(env, "collectstatic", "--noinput", "-v0")  # as docs/deploy.md installs it: doctor checks it
        clusters.start(2)

        # The resident loops start with the clusters: the first round within seconds.
        assert wait_for(lambda: len(results(scale_db)) == SERVICES, timeout=60, interval=0.5), (
            "no probes within 60 s of starting two qclusters"
        )
        time.sleep(STEADY_S)
        before_kill = results(scale_db)

        # docs/deploy.md's end state: `doctor` green, with both clusters' dispatcher loops alive.
        doctor = subprocess.run(
            [sys.executable, "manage.py", "doctor"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
        )
        print(doctor.stdout)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "2 dispatcher loop(s) alive" in doctor.stdout, doctor.stdout

        # Both running: every due slot of every service probed exactly once — no duplicate, no gap.
        due = next_due(scale_db)
        for name, times in before_kill.items():
            served = slots(times, due[name])
            assert len(times) >= STEADY_S // INTERVAL, (name, times)
            assert served == list(range(served[0], served[-1] + 1)), (name, served, gaps(times))

        # The worst case: kill (SIGKILL, the whole process tree) a cluster while it holds a claim, its
        # round in flight: the slot it claimed must still be probed, by the survivor.
        caught = wait_for_a_claim(scale_db, clusters, timeout=3 * INTERVAL)
        assert caught is not None, "never saw a cluster holding a claim"
        victim, held = caught
        killed_at = datetime.now().astimezone()
        clusters.kill(victim)
        survivor = clusters.procs[1 - victim]
        print(f"killed qcluster-{victim} while it held the claim of {held}")

        time.sleep(AFTER_KILL_S)
        assert survivor.poll() is None, "the surviving qcluster died"
        after = results(scale_db)
        due = next_due(scale_db)
        takeovers: dict[str, float] = {}
        for name, times in after.items():
            served = slots(times, due[name])
            assert len(set(served)) == len(served), f"{name}: a slot probed twice: {served}"
            later = [t for t in times if t > killed_at]
            assert later, f"{name}: never probed again after the kill"
            takeovers[name] = (later[0] - killed_at).total_seconds()
            # Once the survivor has it, every slot again, each once.
            resumed = slots(later, due[name])
            assert resumed == list(range(resumed[0], resumed[-1] + 1)), (name, resumed, gaps(later))
            print(f"{name}: {len(times)} probes, latest start {lateness(times, due[name]):.2f} s after its slot")
        # The whole run, kill included: every slot of every service, each once.
        for name, times in after.items():
            served = slots(times, due[name])
            assert served == list(range(served[0], served[-1] + 1)), (name, served, gaps(times))
        print(f"takeover after SIGKILL of a cluster holding a claim: {takeovers}")
        assert max(takeovers.values()) <= TAKEOVER_BOUND_S, f"services went unprobed after the kill: {takeovers}"
    finally:
        clusters.stop_all()
        target.stop()
    assert all(p.poll() is not None for p in clusters.procs)
