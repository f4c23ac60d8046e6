"""The dispatcher's cadence, claims, heartbeat and schedules (real probes against loopback servers)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from configfile.config import import_text
from core import db
from core.cadence import next_due
from core.liveness import OWNER_DEAD_S, forget_dead_loops
from core.models import SchedulerHeartbeat
from dispatch import scheduler
from dispatch.scheduler import (
    Dispatcher,
    apply_scheduler_status,
    beat,
    claim_due,
    finish,
    probe_timeout,
    run_dispatcher,
    scheduler_status,
)
from health.models import Ping, ProbeResult, Service
from tests.servers import Reply

T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.VAR_DIR = tmp_path  # the outage spool lives here, never in the shared var/
    settings.AUTO_RECOVERY_ENABLED = False
    db.reset_breaker()
    yield
    db.STOP.clear()
    db.reset_breaker()


def tcp_service(port: int, name: str = "web", interval: int = 10, **extra) -> Service:
    return Service.objects.create(
        name=name, kind="tcp", settings={"host": "127.0.0.1", "port": port}, interval=interval, timeout=2, **extra
    )


def test_it_books_the_next_slot_from_the_due_time_not_from_now():
    assert next_due(T0, 10, T0 + timedelta(seconds=3)) == T0 + timedelta(seconds=10)


def test_it_skips_missed_slots_instead_of_bursting():
    # Due at T0 but only run 35 s later: the next slot is T0+40, not T0+10, T0+20, T0+30 in a burst.
    assert next_due(T0, 10, T0 + timedelta(seconds=35)) == T0 + timedelta(seconds=40)
    assert next_due(T0, 10, T0 + timedelta(seconds=40)) == T0 + timedelta(seconds=50)


def test_it_cuts_a_scheduled_probe_at_its_interval(settings):
    settings.DISPATCH_MAX_PROBE_S = 50
    assert probe_timeout(Service(timeout=30, interval=10)) == 10
    assert probe_timeout(Service(timeout=3, interval=10)) == 3
    assert probe_timeout(Service(timeout=300, interval=600)) == 50


@pytest.mark.django_db
def test_it_probes_each_service_at_its_own_interval_with_a_controlled_clock(tcp_server):
    fast = tcp_service(tcp_server.port, "fast", interval=10)
    slow = tcp_service(tcp_server.port, "slow", interval=30)
    probed: dict[str, list[datetime]] = {"fast": [], "slow": []}
    with time_machine.travel(T0, tick=False) as clock:
        for second in range(0, 61):
            if second:
                clock.shift(1)
            for service in Dispatcher().pass_once():
                probed[service.name].append(service.due)
    # Never probed before: due at once; then exactly at every slot of its interval.
    assert probed["fast"] == [T0 + timedelta(seconds=s) for s in range(0, 61, 10)]
    assert probed["slow"] == [T0 + timedelta(seconds=s) for s in (0, 30, 60)]
    assert fast.results.count() == 7
    assert slow.results.count() == 3
    assert list(Service.objects.filter(running_since__isnull=False)) == []


@pytest.mark.django_db
def test_it_never_claims_a_service_whose_probe_is_still_running(tcp_server):
    tcp_service(tcp_server.port)
    with time_machine.travel(T0, tick=False) as clock:
        first = claim_due()
        clock.shift(30)  # long past due again, but the claim is held and not yet stale (timeout 2 + 60)
        assert claim_due() == []
        clock.shift(40)  # 70 s: the claim is a dead worker's
        again = claim_due()
    assert [s.name for s in first] == ["web"]
    assert [s.name for s in again] == ["web"]


@pytest.mark.django_db
def test_it_releases_the_claim_and_books_the_slot_after_the_round(tcp_server):
    service = tcp_service(tcp_server.port)
    with time_machine.travel(T0, tick=False):
        claimed = claim_due()
        finish(claimed)
    service.refresh_from_db()
    assert service.running_since is None
    assert service.next_due_at == T0 + timedelta(seconds=10)


@pytest.mark.django_db
def test_it_does_not_probe_disabled_services(tcp_server):
    tcp_service(tcp_server.port, enabled=False)
    assert claim_due() == []


@pytest.mark.slow("a probe that hangs for its whole timeout")
@pytest.mark.django_db(transaction=True)
def test_it_does_not_overlap_when_a_probe_hangs(http_server):
    http_server.reply = Reply(hang=True)
    # timeout 30 but interval 2: the scheduled probe is cut at 2 s, its slot.
    service = Service.objects.create(
        name="hangs", kind="http", settings={"url": http_server.url + "/"}, interval=2, timeout=30
    )
    dispatcher = Dispatcher(executor=ThreadPoolExecutor(max_workers=4))
    started = time.monotonic()
    try:
        claims = [len(dispatcher.pass_once()) for _ in range(5)]  # the round hangs in its thread meanwhile
        assert claims == [1, 0, 0, 0, 0]
        assert len(http_server.requests) <= 1
    finally:
        dispatcher.executor.shutdown(wait=True)
    elapsed = time.monotonic() - started
    result = ProbeResult.objects.get(service=service)
    assert result.status == "down"
    # Cut at its 2 s interval (plus the runner's grace), not at its 30 s timeout: generous bound.
    assert elapsed < 15
    service.refresh_from_db()
    assert service.running_since is None


@pytest.mark.django_db
def test_it_writes_a_heartbeat_on_every_pass(tcp_server):
    with time_machine.travel(T0, tick=False) as clock:
        Dispatcher().pass_once()
        clock.shift(1)
        Dispatcher().pass_once()
    beat = SchedulerHeartbeat.objects.get(name="dispatcher")
    assert beat.last_run_at == T0 + timedelta(seconds=1)
    assert beat.passes == 1  # created on the first pass, counted on the next


@pytest.mark.django_db
def test_it_reports_the_scheduler_unknown_ok_and_late():
    assert scheduler_status() == {"status": "unknown", "lastRunAt": None, "lagSeconds": None}
    SchedulerHeartbeat.objects.create(name="dispatcher", last_run_at=T0)
    ok = scheduler_status(now=T0 + timedelta(seconds=90))
    late = scheduler_status(now=T0 + timedelta(seconds=121))
    assert ok == {"status": "ok", "lastRunAt": T0.isoformat(), "lagSeconds": 90.0}
    assert late["status"] == "late"
    assert late["lagSeconds"] == 121.0


def test_it_makes_a_healthy_overall_degraded_when_the_scheduler_is_late():
    late, ok = {"status": "late"}, {"status": "ok"}
    assert apply_scheduler_status("healthy", late) == "degraded"
    assert apply_scheduler_status("down", late) == "down"
    assert apply_scheduler_status("degraded", late) == "degraded"
    assert apply_scheduler_status("healthy", ok) == "healthy"
    assert apply_scheduler_status("healthy", {"status": "unknown"}) == "healthy"
    assert scheduler.apply_scheduler_to_overall is apply_scheduler_status


@pytest.mark.django_db
def test_it_has_each_schedule_once_after_two_migrates_and_two_imports(tcp_server):
    call_command("migrate", verbosity=0)
    call_command("migrate", verbosity=0)
    config = '[[service]]\nname = "web"\nkind = "tcp"\nhost = "127.0.0.1"\nport = {port}\ninterval = {interval}\n'
    import_text(config.format(port=tcp_server.port, interval=10))
    import_text(config.format(port=tcp_server.port, interval=20))  # a change: config_imported is sent again
    rows = list(Schedule.objects.order_by("name").values_list("name", "func"))
    expected = sorted((name, spec["func"]) for name, spec in scheduler.schedule_specs().items())
    assert rows == expected  # each once
    assert ("opsportal-dispatch", "dispatch.tasks.dispatch") in rows
    assert ("opsportal-prune", "dispatch.tasks.prune") in rows
    dispatch = Schedule.objects.get(name="opsportal-dispatch")
    assert (dispatch.schedule_type, dispatch.minutes, dispatch.repeats) == (Schedule.MINUTES, 1, -1)


@pytest.mark.django_db
def test_it_removes_a_duplicated_schedule():
    Schedule.objects.create(name="opsportal-dispatch", func="dispatch.tasks.dispatch")
    scheduler.ensure_schedules()
    assert Schedule.objects.filter(name="opsportal-dispatch").count() == 1


@pytest.mark.slow("runs the loop, then stops it with SIGTERM")
@pytest.mark.django_db(transaction=True)
def test_it_stops_the_loop_promptly_on_sigterm(tcp_server):
    import os
    import signal
    import threading

    tcp_service(tcp_server.port, interval=1)
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    summary = Dispatcher(executor=ThreadPoolExecutor(max_workers=2)).run(seconds=60, tick=0.2)
    assert summary.startswith("dispatcher stopped early")
    assert time.monotonic() - started < 10  # not the 60 s the loop was given
    assert signal.getsignal(signal.SIGTERM) == before  # the process's own handler is back


@pytest.mark.django_db
def test_it_takes_over_the_claims_of_a_loop_that_stopped_beating_at_once(tcp_server):
    tcp_service(tcp_server.port, next_due_at=T0)
    with time_machine.travel(T0, tick=False) as clock:
        beat(owner="a")
        beat(owner="b")
        held = claim_due(owner="a")
        clock.shift(OWNER_DEAD_S - 1)
        beat(owner="b")
        while_a_beats = claim_due(owner="b")  # a is alive (beat 14 s ago): its probe is still running
        clock.shift(2)  # a has been silent for OWNER_DEAD_S + 1: it died, mid-round
        beat(owner="b")
        taken = claim_due(owner="b")
    assert [s.claimed_by for s in held] == ["a"]
    assert while_a_beats == []
    assert [(s.name, s.claimed_by, s.due) for s in taken] == [("web", "b", T0)]  # the same slot, not skipped
    service = Service.objects.get()
    assert (service.claimed_by, service.running_since) == ("b", T0 + timedelta(seconds=OWNER_DEAD_S + 1))
    finish(held, T0)  # the dead loop's late finish must not release the new owner's claim
    service.refresh_from_db()
    assert service.claimed_by == "b"


@pytest.mark.django_db
def test_it_never_takes_a_claim_from_a_live_loop_before_it_is_stale(tcp_server):
    tcp_service(tcp_server.port)
    with time_machine.travel(T0, tick=False) as clock:
        beat(owner="a")
        claim_due(owner="a")
        for _ in range(6):  # a keeps beating through a long probe (timeout 2 + 60 s grace)
            clock.shift(10)
            beat(owner="a")
            assert claim_due(owner="b") == []
        clock.shift(10)  # 70 s: stale whoever holds it
        assert [s.claimed_by for s in claim_due(owner="b")] == ["b"]


@pytest.mark.django_db
def test_it_does_not_probe_again_a_slot_it_probed_during_an_outage(tcp_server):
    service = tcp_service(tcp_server.port)
    Service.objects.filter(pk=service.pk).update(next_due_at=T0)
    dispatcher = Dispatcher()
    with time_machine.travel(T0, tick=False) as clock:
        dispatcher._refresh_known()
        dispatcher._outage_pass(T0)  # the database was away: probed from memory for slot T0
        clock.shift(3)  # back: the database still says T0 is due
        claimed = dispatcher.pass_once()
        booked = Service.objects.get().next_due_at
        clock.shift(7)
        at_next_slot = dispatcher.pass_once()
    assert claimed == []
    assert booked == T0 + timedelta(seconds=10)
    assert [s.due for s in at_next_slot] == [T0 + timedelta(seconds=10)]
    assert ProbeResult.objects.count() == 2  # T0 (from memory) and T0 + 10, each once
    assert Service.objects.get().running_since is None


@pytest.mark.django_db
def test_it_probes_the_current_slot_when_the_outage_clock_is_due_too(tcp_server):
    service = tcp_service(tcp_server.port)
    Service.objects.filter(pk=service.pk).update(next_due_at=T0)
    dispatcher = Dispatcher()
    with time_machine.travel(T0, tick=False) as clock:
        dispatcher._refresh_known()
        dispatcher._outage_pass(T0)
        clock.shift(12)  # back after the next slot (T0 + 10) fell due
        claimed = dispatcher.pass_once()
    assert [s.due for s in claimed] == [T0 + timedelta(seconds=10)]
    assert Service.objects.get().next_due_at == T0 + timedelta(seconds=20)
    assert ProbeResult.objects.count() == 2


@pytest.mark.slow("a resident loop beating for a few ticks")
@pytest.mark.django_db(transaction=True)
def test_it_leaves_the_fallback_task_idle_while_a_resident_loop_beats(tcp_server):
    tcp_service(tcp_server.port)
    beat(owner="resident@host:1:abc")
    assert run_dispatcher(seconds=5, tick=0.1) == "dispatcher not needed: 1 resident loop(s) alive"
    assert ProbeResult.objects.count() == 0
    SchedulerHeartbeat.objects.filter(name__startswith="loop:").update(
        last_run_at=timezone.now() - timedelta(seconds=OWNER_DEAD_S + 1)
    )
    summary = run_dispatcher(seconds=0.5, tick=0.1)
    assert summary.startswith("dispatcher done"), summary
    assert ProbeResult.objects.count() == 1


@pytest.mark.django_db
def test_it_forgets_loops_silent_for_an_hour():
    beat(T0, owner="old")
    beat(T0 + timedelta(minutes=59), owner="recent")
    assert forget_dead_loops(T0 + timedelta(hours=1, seconds=1)) == 1
    names = set(SchedulerHeartbeat.objects.values_list("name", flat=True))
    assert names == {"dispatcher", "loop:recent"}


@pytest.mark.django_db(transaction=True)  # the probe reads the pings from its own thread's connection
def test_it_judges_a_heartbeat_at_its_deadline_not_at_the_next_interval():
    """A daily check of an hourly job would see it late a day late: the probe's deadline books the next look."""
    job = Service.objects.create(
        name="hourly-job", kind="push", settings={"period": 3600, "grace": 60}, interval=86400, timeout=2
    )
    Ping.objects.create(service_id=job.ping_uuid, kind="success", received_at=T0)
    deadline = T0 + timedelta(seconds=3600 + 60 + 1)
    with time_machine.travel(T0 + timedelta(seconds=10), tick=False):
        Dispatcher().pass_once()
    job.refresh_from_db()
    assert (job.status, job.next_due_at) == ("up", deadline), job.last_detail
    with time_machine.travel(deadline, tick=False):
        assert [s.name for s in Dispatcher().pass_once()] == ["hourly-job"]
    job.refresh_from_db()
    assert job.status == "down"
    assert job.next_due_at == deadline + timedelta(seconds=86400)  # late stays late: the interval again
