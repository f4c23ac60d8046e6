"""The tunnel watchdog while the portal's database is away: real outages, real connectors, no mocks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.models import SpoolBatch
from core.spool import default_spool, replay_pending
from health.models import Event
from tests.core.outage_support import quick_db_hardening
from tests.servers import Reply
from tests.tunnels.conftest import assert_clean
from tunnels import memory, watchdog
from tunnels.models import Tunnel, TunnelEvent

pytestmark = pytest.mark.django_db(transaction=True)

Kind = TunnelEvent.Kind


@pytest.fixture(autouse=True)
def _outage_ready(settings, tmp_path) -> Iterator[None]:
    """A private var dir (spool, host claims), quick retries, a closed breaker, nothing remembered."""
    memory.forget()
    with quick_db_hardening(settings, tmp_path / "var"):
        yield
    memory.forget()


def kill(pid: int) -> None:
    """SIGKILL a connector and wait until it is gone (our child: its reaper, procs.start_detached's, or this wait)."""
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess):  # the reaper may have collected it already
        psutil.Process(pid).wait(10)


def kinds(tunnel: Tunnel) -> list[str]:
    return list(tunnel.events.order_by("created_at", "pk").values_list("kind", flat=True))


@pytest.mark.slow("restarts a fake connector during a database outage")
def test_it_restarts_a_connector_killed_during_an_outage_and_replays_its_events_once(make_tunnel, outage):
    # No process_match: only the pid the outage restart recorded tells the next check which connector is its own.
    fake = make_tunnel(process_match="")
    old = fake.start()
    t0 = timezone.now()
    assert watchdog.run_due(t0) == []  # not due yet; remembered with its schedule
    kill(old)

    outage.start()
    assert watchdog.run_due_outage(t0 + timedelta(seconds=10)) == []  # not due on the outage clock either
    (result,) = watchdog.run_due_outage(t0 + timedelta(seconds=31))
    assert result.events == [Kind.PROCESS_MISSING, Kind.RESTARTED]
    assert result.status == Tunnel.Status.UP and result.pid != old
    assert psutil.Process(result.pid).is_running()
    assert default_spool().pending()
    assert watchdog.run_due_outage(t0 + timedelta(seconds=32)) == []  # booked for its next slot
    outage.end()

    assert replay_pending() == 4  # two events, the notification and the row update
    tunnel = fake.reload()
    assert kinds(tunnel) == [Kind.PROCESS_MISSING, Kind.RESTARTED, Kind.PROCESS_MISSING, Kind.RESTARTED]
    assert tunnel.pid == result.pid and tunnel.status == Tunnel.Status.UP
    assert tunnel.events.filter(kind=Kind.RESTARTED).order_by("-created_at").first().pid == result.pid
    assert Event.objects.filter(kind=Event.Kind.TUNNEL_RESTARTED, subject="edge").count() == 2
    # The first check after the outage finds the connector started during it: no second restart.
    (after,) = watchdog.run_due(t0 + timedelta(seconds=40))
    assert after.events == [Kind.CHECK_OK] and after.pid == result.pid
    assert replay_pending() == 0 and not default_spool().pending()
    assert sum(SpoolBatch.objects.values_list("records", flat=True)) == 4  # each applied once
    assert_clean(fake)


@pytest.mark.slow("restarts fake connectors during a database outage")
def test_it_holds_the_restart_limit_during_an_outage_counting_the_known_restarts(make_tunnel, outage):
    fake = make_tunnel("--exit-at-once", max_restarts_per_hour=3)  # a crash loop
    first = watchdog.check_now(fake.tunnel)
    assert first.events == [Kind.PROCESS_MISSING, Kind.RESTART_FAILED]  # one attempt the database knows
    t0 = timezone.now()
    watchdog.run_due(t0)

    outage.start()
    checks = [watchdog.run_due_outage(t0 + timedelta(seconds=31 * n)) for n in range(1, 6)]
    outage.end()

    assert [r.events for (r,) in checks] == [
        [Kind.PROCESS_MISSING, Kind.RESTART_FAILED],
        [Kind.PROCESS_MISSING, Kind.RESTART_FAILED],
        [Kind.PROCESS_MISSING, Kind.RESTART_SUPPRESSED],
        [Kind.PROCESS_MISSING],  # suppressed again: told once an hour
        [Kind.PROCESS_MISSING],
    ]
    assert [r.status for (r,) in checks][2:] == [Tunnel.Status.SUPPRESSED] * 3
    replay_pending()
    tunnel = fake.reload()
    assert tunnel.events.filter(kind__in=TunnelEvent.RESTART_KINDS).count() == 3  # the limit, not one more
    assert tunnel.events.filter(kind=Kind.RESTART_SUPPRESSED).count() == 1
    assert Event.objects.filter(kind=Event.Kind.TUNNEL_RESTART_SUPPRESSED, subject="edge").count() == 1
    assert tunnel.status == Tunnel.Status.SUPPRESSED
    # The connector really was started three times in all, not more.
    assert Path(tunnel.log_file).read_text().count("Starting fake tunnel") == 3
    assert_clean(fake)


@pytest.mark.slow("fake connectors and a second process holding the claim")
def test_it_leaves_a_tunnel_to_another_process_of_the_host_that_holds_its_claim(make_tunnel, outage):
    fake = make_tunnel()
    old = fake.start()
    t0 = timezone.now()
    watchdog.run_due(t0)
    kill(old)
    lock = memory.ledger_dir() / f"{memory.identity(fake.tunnel)}.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True);"
            " sys.stdin.read()",
            str(lock),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        outage.start()
        assert watchdog.run_due_outage(t0 + timedelta(seconds=31)) == []
        assert fake.processes() == []  # nothing started while another process holds the tunnel
    finally:
        holder.communicate("", timeout=10)
    # Another process of this host checked it a moment ago (its ledger says so): not checked twice.
    outage_clock = t0 + timedelta(seconds=70)
    memory.Ledger(checked_at=outage_clock - timedelta(seconds=2)).write(fake.tunnel)
    assert watchdog.run_due_outage(outage_clock) == []
    (result,) = watchdog.run_due_outage(outage_clock + timedelta(seconds=30))
    assert result.restarted
    outage.end()
    assert_clean(fake)


@pytest.mark.slow("starts a fake connector")
def test_it_spools_an_event_whose_write_fails_mid_check_with_the_database_up(make_tunnel, http_server, outage):
    def fail_and_go_away(request: dict) -> Reply:
        outage.start()  # the database goes away while this check runs
        return Reply(503, "origin down")

    http_server.handler = fail_and_go_away
    fake = make_tunnel(public_url=http_server.url + "/")
    pid = fake.start()
    (result,) = watchdog.run_due(timezone.now() + timedelta(seconds=31))
    assert result.events == [Kind.ORIGIN_UNREACHABLE] and outage.started.is_set()
    assert default_spool().pending()
    outage.end()

    replay_pending()
    tunnel = fake.reload()
    unreachable = tunnel.events.filter(kind=Kind.ORIGIN_UNREACHABLE)
    assert unreachable.count() == 1 and unreachable.get().pid == pid
    assert tunnel.last_detail.startswith("origin unreachable: ")
    assert_clean(fake)


def test_it_reads_the_rolling_hour_of_restarts_at_most_every_refresh_while_idle(make_tunnel):
    fake = make_tunnel()
    Tunnel.objects.filter(pk=fake.tunnel.pk).update(next_due_at=timezone.now() + timedelta(hours=1))  # not due

    def event_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            watchdog.run_due()
        return sum("tunnels_tunnelevent" in q["sql"] for q in queries.captured_queries)

    assert event_queries() == 1  # a tunnel new to memory: its restarts are read at once
    assert [event_queries() for _ in range(3)] == [0, 0, 0]  # every pass after: the tunnel row only
    memory.events_read_at -= memory.EVENTS_REFRESH_S
    assert event_queries() == 1  # refreshed once the interval has passed
