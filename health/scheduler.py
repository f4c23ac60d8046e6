"""The probe dispatcher, its heartbeat, and the Django-Q2 schedules.

Django-Q2 schedules are minute-grained and its scheduler looks only every ~30 s, yet each
service is probed at its own `interval` (10 s … 24 h) within ±5 s. So one schedule,
`opsportal-dispatch`, starts `health.tasks.dispatch` every minute, and that task runs a claim
loop for DISPATCH_LOOP_SECONDS (85 s): consecutive loops overlap, so there is no gap however
late the scheduler looks. Every DISPATCH_TICK_MS (1 s) a pass:

1. claims the due services (`next_due_at <= now`, not running or a stale claim) with a
   conditional UPDATE that sets `running_since` and must touch exactly one row — two loops
   (or two qclusters on one PostgreSQL) never probe a service twice for one due time;
2. runs the claimed services as one round (health.runner.run_round, with auto-recovery) in a
   thread, so a hanging probe delays nothing else; each probe is cut at its interval and at
   DISPATCH_MAX_PROBE_S, so a round never outlives its slot;
3. sets `next_due_at = due + interval` (not now + interval: no drift), skipping slots that
   were missed instead of bursting, and clears `running_since`;
4. runs the tunnel watchdog (tunnels.watchdog.run_due claims its own tunnels);
5. writes the `dispatcher` heartbeat row.

While the database cannot be reached the loop keeps probing the services it last saw on its
own clock and the results go to the outage spool (opsportal.spool). The loop ends after its
current pass on SIGTERM (opsportal.db.stoppable) and when its qcluster is stopping
(`cluster_stopping`: qcluster takes SIGTERM in its main process and waits for its workers).

Liveness: `scheduler_status()` is `scheduler` of /health/status — "ok", "late" (heartbeat older
than 2 dispatcher intervals, 120 s) or "unknown" (never ran). The API lifts the overall status
with `apply_scheduler_status(overall, scheduler)`: a late scheduler makes a `healthy` overall
`degraded` (a monitor whose scheduler died must not show green forever); `degraded`/`down` stay.
`apply_scheduler_to_overall` is the same function.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import F, Q
from django.utils import timezone

from health.models import DEGRADED, HEALTHY, SchedulerHeartbeat, Service
from opsportal.db import CircuitBreakerError, run_db, stoppable

log = logging.getLogger("opsportal.scheduler")

DISPATCH_SCHEDULE = "opsportal-dispatch"
PRUNE_SCHEDULE = "opsportal-prune"
NOTIFY_SCHEDULE = "opsportal-notify"
HEARTBEAT = "dispatcher"
# The dispatcher schedule's period; the heartbeat is late after two of them.
DISPATCH_INTERVAL_S = 60
# A claim older than the probe's timeout plus this is a dead worker's: the service may be claimed again.
STALE_CLAIM_GRACE_S = 60
# How often the loop asks whether its qcluster is stopping.
CLUSTER_CHECK_S = 2.0


# --- schedules -------------------------------------------------------------------------
def schedule_specs() -> dict[str, dict[str, Any]]:
    from django_q.models import Schedule

    return {
        DISPATCH_SCHEDULE: {"func": "health.tasks.dispatch", "schedule_type": Schedule.MINUTES, "minutes": 1},
        PRUNE_SCHEDULE: {"func": "health.tasks.prune", "schedule_type": Schedule.HOURLY},
        NOTIFY_SCHEDULE: {"func": "health.tasks.notify", "schedule_type": Schedule.MINUTES, "minutes": 1},
    }


def ensure_schedules(using: str = "default") -> list[str]:
    """Create or update the portal's schedules by name; running it again changes nothing."""
    from django_q.models import Schedule

    for name, values in schedule_specs().items():
        rows = list(Schedule.objects.using(using).filter(name=name).order_by("pk").values_list("pk", flat=True))
        if len(rows) > 1:  # a duplicate from an older install: keep the first
            Schedule.objects.using(using).filter(pk__in=rows[1:]).delete()
        Schedule.objects.using(using).update_or_create(name=name, defaults={**values, "repeats": -1})
    return list(schedule_specs())


def schedules_on_migrate(sender: Any = None, using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver: create the schedules once django_q's table exists."""
    if "django_q_schedule" in connections[using].introspection.table_names():
        ensure_schedules(using)


def schedules_on_import(sender: Any = None, **kwargs: Any) -> None:
    """health.config.config_imported receiver."""
    ensure_schedules()


# --- cadence ---------------------------------------------------------------------------
def next_due(due: datetime, interval: int, now: datetime) -> datetime:
    """The slot after `due`; slots already past are skipped (no burst of catch-up probes)."""
    step = timedelta(seconds=interval)
    following = due + step
    if following <= now:
        missed = int((now - due) / step)
        following = due + step * (missed + 1)
    return following


def _stale(service: Service, now: datetime) -> bool:
    return (now - service.running_since).total_seconds() > service.timeout + STALE_CLAIM_GRACE_S


def claim_due(now: datetime | None = None) -> list[Service]:
    """Claim the services whose probe is due; each is claimed by exactly one caller.

    The conditional UPDATE matches the `next_due_at` and `running_since` this caller read, so of
    two callers racing for one service only the first changes the row (rowcount 1).
    Each claimed service carries `due` (the slot it is probed for) and `running_since`.
    """
    now = now or timezone.now()
    candidates = (
        Service.objects.filter(enabled=True)
        .filter(Q(next_due_at__lte=now) | Q(next_due_at__isnull=True))
        .order_by(F("next_due_at").asc(nulls_first=True), "pk")
    )
    claimed: list[Service] = []
    for service in candidates:
        if service.running_since is not None and not _stale(service, now):
            continue  # its probe is still running: never start it twice
        row = Service.objects.filter(pk=service.pk)
        row = row.filter(next_due_at=service.next_due_at) if service.next_due_at else row.filter(next_due_at=None)
        row = (
            row.filter(running_since=service.running_since) if service.running_since else row.filter(running_since=None)
        )
        if row.update(running_since=now) == 1:
            service.due = service.next_due_at or now
            service.running_since = now
            claimed.append(service)
    return claimed


def finish(services: list[Service], now: datetime | None = None) -> None:
    """Release the claims and book each service's next slot."""
    now = now or timezone.now()
    for service in services:
        Service.objects.filter(pk=service.pk, running_since=service.running_since).update(
            running_since=None, next_due_at=next_due(service.due, service.interval, now)
        )


def probe_timeout(service: Service) -> float:
    """A scheduled probe's timeout: its own, but never past its interval nor DISPATCH_MAX_PROBE_S."""
    return max(0.1, min(service.timeout, service.interval, settings.DISPATCH_MAX_PROBE_S))


def beat(now: datetime | None = None) -> None:
    now = now or timezone.now()
    updated = SchedulerHeartbeat.objects.filter(name=HEARTBEAT).update(
        last_run_at=now, host=socket.gethostname()[:100], pid=os.getpid(), passes=F("passes") + 1
    )
    if not updated:
        SchedulerHeartbeat.objects.get_or_create(
            name=HEARTBEAT, defaults={"last_run_at": now, "host": socket.gethostname()[:100], "pid": os.getpid()}
        )


# --- the dispatcher --------------------------------------------------------------------
@dataclass
class Dispatcher:
    """One claim loop. `pass_once` is a pass; `run` repeats it until the deadline or SIGTERM."""

    executor: ThreadPoolExecutor | None = None  # None: rounds run inline (tests, a single pass)
    passes: int = 0
    probed: int = 0
    outage_passes: int = 0
    inflight: dict[int, Future] = field(default_factory=dict)
    # The last services seen, and their local due times: used only while the database is down.
    known: dict[int, Service] = field(default_factory=dict)
    local_due: dict[int, datetime] = field(default_factory=dict)
    known_at: float = 0.0
    tunnels: Future | None = None

    def pass_once(self, now: datetime | None = None) -> list[Service]:
        now = now or timezone.now()
        self.passes += 1
        try:
            run_db(self._refresh_known, retry=False)
            claimed = run_db(claim_due, now, retry=False)
        except (DatabaseError, CircuitBreakerError) as exc:
            self.outage_passes += 1
            if self.outage_passes == 1:
                log.warning("Dispatcher: database unavailable (%s); probing from memory", type(exc).__name__)
            self._outage_pass(now)
            return []
        if self.outage_passes:
            log.warning("Dispatcher: database back after %d passes", self.outage_passes)
            self.outage_passes = 0
        for service in claimed:  # keep the outage clock in step with the database's
            self.local_due[service.pk] = next_due(service.due, service.interval, now)
        if claimed:
            self._submit(claimed, outage=False)
        self._tunnels(now)
        with contextlib.suppress(DatabaseError, CircuitBreakerError):  # the next pass beats again
            run_db(beat, now, retry=False)
        return claimed

    def _refresh_known(self) -> None:
        if time.monotonic() - self.known_at > 30 or not self.known:
            self.known = {s.pk: s for s in Service.objects.filter(enabled=True)}
            self.local_due = {pk: s.next_due_at or timezone.now() for pk, s in self.known.items()}
            self.known_at = time.monotonic()

    def _outage_pass(self, now: datetime) -> None:
        due = [
            s
            for pk, s in self.known.items()
            if self.local_due.get(pk, now) <= now and not (pk in self.inflight and not self.inflight[pk].done())
        ]
        for service in due:
            service.due = self.local_due.get(service.pk, now)
            self.local_due[service.pk] = next_due(service.due, service.interval, now)
        if due:
            self._submit(due, outage=True)

    def _submit(self, services: list[Service], *, outage: bool) -> None:
        self.probed += len(services)
        if self.executor is None:
            self._round(services, outage, in_thread=False)
            return
        future = self.executor.submit(self._round, services, outage, True)
        for service in services:
            self.inflight[service.pk] = future

    def _round(self, services: list[Service], outage: bool, in_thread: bool) -> None:
        from health.runner import run_round

        for service in services:
            service.timeout = probe_timeout(service)
        try:
            run_round(services, recover=not outage)
        except Exception:  # a failed round must not end the loop; the claim is still released below
            log.exception("Dispatcher: probe round of %s failed", ", ".join(s.name for s in services))
        finally:
            if not outage:
                try:
                    run_db(finish, services)
                except (DatabaseError, CircuitBreakerError) as exc:
                    # The claims go stale and are taken again later; nothing else to do without a database.
                    log.warning("Dispatcher: could not release claims (%s)", type(exc).__name__)
            if in_thread:
                connections.close_all()

    def _tunnels(self, now: datetime) -> None:
        from tunnels.watchdog import run_due

        if self.executor is None:
            run_due(now)
        elif self.tunnels is None or self.tunnels.done():
            self.tunnels = self.executor.submit(self._tunnels_in_thread, now)

    @staticmethod
    def _tunnels_in_thread(now: datetime) -> None:
        from tunnels.watchdog import run_due

        try:
            run_due(now)
        except Exception:
            log.exception("Dispatcher: tunnel watchdog failed")
        finally:
            connections.close_all()

    def run(self, seconds: float | None = None, tick: float | None = None) -> str:
        seconds = settings.DISPATCH_LOOP_SECONDS if seconds is None else seconds
        tick = settings.DISPATCH_TICK_MS / 1000 if tick is None else tick
        deadline = time.monotonic() + seconds
        next_cluster_check = 0.0
        with stoppable() as stop:
            while not stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    self.pass_once()
                except Exception:
                    log.exception("Dispatcher: pass failed")
                if started >= next_cluster_check:
                    next_cluster_check = started + CLUSTER_CHECK_S
                    if cluster_stopping():
                        log.info("Dispatcher: the cluster is stopping; ending the loop")
                        stop.set()
                stop.wait(max(0.0, tick - (time.monotonic() - started)))
            if self.executor is not None:
                self.executor.shutdown(wait=True)  # rounds are bounded by probe_timeout()
        return self.summary(stopped=stop.is_set())

    def summary(self, stopped: bool = False) -> str:
        end = "stopped early (SIGTERM or its cluster stopping)" if stopped else "done"
        return f"dispatcher {end}: {self.passes} passes, {self.probed} probes started"


def cluster_stopping() -> bool:
    """True when this process is a qcluster worker whose cluster is stopping.

    `qcluster` takes SIGTERM in its main process (systemd `KillMode=mixed`), and its sentinel then waits
    for each worker to finish its task: the worker itself gets no signal. The sentinel publishes its
    status (Django-Q2's `Stat`, in the shared cache) every half second, so the loop reads it.
    """
    try:
        from django_q.conf import Conf
        from django_q.status import Stat

        parent = os.getppid()
        return any(stat.sentinel == parent and stat.status == Conf.STOPPING for stat in Stat.get_all())
    except Exception:  # no cache, no cluster: not stopping as far as we can tell
        return False


def run_dispatcher(seconds: float | None = None, tick: float | None = None) -> str:
    """The `opsportal-dispatch` task: the claim loop with a thread pool for rounds."""
    workers = max(2, min(settings.PROBE_CONCURRENCY, 16))
    return Dispatcher(executor=ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dispatch")).run(
        seconds, tick
    )


# --- liveness --------------------------------------------------------------------------
def scheduler_status(now: datetime | None = None) -> dict[str, Any]:
    """`scheduler` of /health/status: {"status": "ok|late|unknown", "lastRunAt", "lagSeconds"}."""
    now = now or timezone.now()
    row = SchedulerHeartbeat.objects.filter(name=HEARTBEAT).first()
    if row is None:
        return {"status": "unknown", "lastRunAt": None, "lagSeconds": None}
    lag = max(0.0, (now - row.last_run_at).total_seconds())
    return {
        "status": "late" if lag > 2 * DISPATCH_INTERVAL_S else "ok",
        "lastRunAt": row.last_run_at.isoformat(),
        "lagSeconds": round(lag, 1),
    }


def apply_scheduler_status(overall: str, scheduler: dict[str, Any] | None = None) -> str:
    """The overall status with the scheduler's liveness applied: late makes `healthy` `degraded`."""
    scheduler = scheduler if scheduler is not None else scheduler_status()
    if scheduler.get("status") == "late" and overall == HEALTHY:
        return DEGRADED
    return overall


apply_scheduler_to_overall = apply_scheduler_status


# --- housekeeping ----------------------------------------------------------------------
def prune_history(days: int | None = None, batch: int | None = None) -> int:
    """Roll up, then delete probe results older than RAW_RETENTION_DAYS (health.rollups.prune: in batches,
    rollups kept ROLLUP_RETENTION_DAYS). Returns the number of probe results deleted."""
    from health.rollups import prune

    return prune(batch=batch, raw_days=days).results
