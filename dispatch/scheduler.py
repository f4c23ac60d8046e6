"""The probe dispatcher, its heartbeat, and the Django-Q2 schedules.

Django-Q2 schedules are minute-grained and its scheduler looks only every ~30 s, yet each
service is probed at its own `interval` (10 s … 24 h) within ±5 s. So a claim loop runs
resident in the main process of every `qcluster` (health/management/commands/qcluster.py,
DISPATCH_RESIDENT) for as long as the cluster runs: with two clusters, the survivor of a crash
already has a loop and carries every service within one interval. The `opsportal-dispatch`
schedule stays as the fallback: every minute its task runs a loop for DISPATCH_LOOP_SECONDS
(85 s, so consecutive loops overlap) only when no resident loop has beaten lately.
Every DISPATCH_TICK_MS (1 s) a pass:

1. beats (the `dispatcher` row, and the loop's own `loop:<owner>`), then claims the due services (`next_due_at <= now`,
   not running, or a claim that is stale or held by a loop that stopped beating OWNER_DEAD_S ago)
   with a conditional UPDATE that sets `running_since`/`claimed_by` and must touch exactly one
   row — two loops (or two qclusters on one PostgreSQL) never probe a service twice for one due time;
2. runs the claimed services as one round (dispatch.rounds.run: probes, then auto-recovery) in a
   thread, so a hanging probe delays nothing else; each probe is cut at its interval and at
   DISPATCH_MAX_PROBE_S, so a round never outlives its slot;
3. sets `next_due_at = due + interval` (not now + interval: no drift), skipping slots that
   were missed instead of bursting, and clears `running_since`. A round's database retries end with
   its slot (core.db run_db `deadline`): past it the round is spooled, never held into the next
   slot. A claim the round could not release (the database went away) is remembered: when the
   database is back the loop re-takes its own claim at once (it knows that round ended) and books the
   slot after the one it probed, so the slot is neither lost to a claim waiting to go stale nor probed
   twice. So are the claims a pass had already written (each UPDATE commits alone) when the database
   failed it midway; an outage booking is dropped only once its slot is booked or probed;
4. runs the tunnel watchdog (tunnels.watchdog.run_due claims its own tunnels; during an outage
   run_due_outage checks the tunnels it last saw, from memory).

While the database cannot be reached the loop keeps probing the services it last saw on its
own clock and the results go to the outage spool (core.spool). With several clusters (REDIS_URL
set) each slot is claimed in Redis first (`outage_claim`), so only one loop probes it; when Redis is
away too, every loop probes (a duplicate beats a gap). When the database is back, a slot that was
already probed from memory is not probed again: the claim books the outage clock's next slot.
A loop ends after its current pass on SIGTERM (core.db.stoppable) and when its qcluster is
stopping (the resident loop: the cluster's stop event; a task loop: `cluster_stopping`, since qcluster
takes SIGTERM in its main process and waits for its workers).

Liveness: `scheduler_status()` is `scheduler` of /health/status — "ok", "late" (heartbeat older
than 2 dispatcher intervals, 120 s) or "unknown" (never ran). The API lifts the overall status
with `apply_scheduler_status(overall, scheduler)`: a late scheduler makes a `healthy` overall
`degraded` (a monitor whose scheduler died must not show green forever); `degraded`/`down` stay.
`apply_scheduler_to_overall` is the same function.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import F, Q
from django.utils import timezone

from core import claims
from core.cadence import next_due, slot_start
from core.db import CircuitBreakerError, run_db, stoppable
from core.liveness import LOOP_PREFIX, beat_rows, live_owners, new_owner
from core.models import SchedulerHeartbeat
from dispatch import rounds
from health.models import DEGRADED, HEALTHY, Event, Service
from tunnels import watchdog

log = logging.getLogger("opsportal.scheduler")

DISPATCH_SCHEDULE = "opsportal-dispatch"
PRUNE_SCHEDULE = "opsportal-prune"
NOTIFY_SCHEDULE = "opsportal-notify"
HEARTBEAT = "dispatcher"
# The dispatcher schedule's period; the heartbeat is late after two of them.
DISPATCH_INTERVAL_S = 60
# A claim older than the probe's timeout plus this is a dead worker's: the service may be claimed again.
STALE_CLAIM_GRACE_S = 60
# During a database outage the loops of several clusters claim each slot in Redis under this prefix.
OUTAGE_CLAIM_PREFIX = "opsportal:outage-claim:"
# How often the loop asks whether its qcluster is stopping.
CLUSTER_CHECK_S = 2.0


# --- schedules -------------------------------------------------------------------------
def schedule_specs() -> dict[str, dict[str, Any]]:
    from django_q.models import Schedule

    return {
        DISPATCH_SCHEDULE: {"func": "dispatch.tasks.dispatch", "schedule_type": Schedule.MINUTES, "minutes": 1},
        PRUNE_SCHEDULE: {"func": "dispatch.tasks.prune", "schedule_type": Schedule.HOURLY},
        NOTIFY_SCHEDULE: {"func": "dispatch.tasks.notify", "schedule_type": Schedule.MINUTES, "minutes": 1},
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
    """configfile.config.config_imported receiver."""
    ensure_schedules()


_redis_clients: dict[str, Any] = {}


def outage_claim(service: Service, due: datetime, now: datetime, owner: str) -> bool:
    """During a database outage: True when this loop should probe `service`'s current slot.

    Without REDIS_URL there is one cluster (or no way to agree): always True. With it, the first loop
    to SET the slot's key (NX) probes it. Every loop's outage clock is on the same grid (next_due keeps
    it), so they name the same slot. Redis away too: True — a duplicate beats a gap.
    """
    url = settings.REDIS_URL
    if not url:
        return True
    import redis

    key = f"{OUTAGE_CLAIM_PREFIX}{service.pk}:{int(slot_start(due, service.interval, now).timestamp())}"
    try:
        if url not in _redis_clients:  # short timeouts: Redis away must not stall the outage pass
            _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return bool(_redis_clients[url].set(key, owner, nx=True, ex=max(60, 2 * service.interval)))
    except redis.RedisError as exc:
        log.warning("Dispatcher: no outage claim for %s (%s); probing anyway", service.name, type(exc).__name__)
        return True


def _stale(service: Service, now: datetime) -> bool:
    return (now - service.running_since).total_seconds() > service.timeout + STALE_CLAIM_GRACE_S


def claim_due(
    now: datetime | None = None, owner: str = "", retake: Collection[int] = (), into: list[Service] | None = None
) -> list[Service]:
    """Claim the services whose probe is due; each is claimed by exactly one caller.

    The conditional UPDATE matches the `next_due_at` and `running_since` this caller read, so of
    two callers racing for one service only the first changes the row (rowcount 1).
    A running probe is never started twice, unless its claim is stale (older than its timeout
    plus STALE_CLAIM_GRACE_S) or its loop has died (no heartbeat for owner_dead_after()): then
    the slot is taken over within seconds, not a minute later. `retake`: pks of `owner`'s own claims
    whose round has ended but could not release them (the database went away): claimed again at once.
    Each claimed service carries `due` (the slot it is probed for) and `running_since`.
    Each UPDATE commits on its own, so a pass that fails midway has claims already written: `into` (when
    given) holds each claim as soon as it is made, and also the service whose UPDATE failed (it may have
    committed before the connection went), so the caller can re-take them all once the database answers.
    """
    now = now or timezone.now()
    candidates = (
        Service.objects.filter(enabled=True)
        .filter(Q(next_due_at__lte=now) | Q(next_due_at__isnull=True))
        .order_by(F("next_due_at").asc(nulls_first=True), "pk")
    )
    claimed: list[Service] = [] if into is None else into
    alive: set[str] | None = None
    beaten = time.monotonic()
    for service in candidates:
        if owner and time.monotonic() - beaten > 1.0:  # a burst of claims: stay alive in the others' eyes
            beat(owner=owner)
            beaten = time.monotonic()
        if service.running_since is not None and not _stale(service, now):
            if not service.claimed_by:
                continue  # its probe is still running: never start it twice
            if owner and service.claimed_by == owner and service.pk in retake:
                log.info("Dispatcher: re-taking %s: its round ended but could not release its claim", service.name)
            else:
                alive = live_owners(now) if alive is None else alive
                if service.claimed_by in alive or service.claimed_by == owner:
                    continue
                log.warning("Dispatcher: taking over %s from loop %s (no heartbeat)", service.name, service.claimed_by)
        try:
            won = claims.claim(
                Service.objects.filter(pk=service.pk),
                read={"next_due_at": service.next_due_at, "running_since": service.running_since},
                values={"running_since": now, "claimed_by": owner},
            )
        except DatabaseError:
            claimed.append(service)  # perhaps claimed: re-taking a claim that is not this loop's does nothing
            raise
        if won:
            service.due = service.next_due_at or now
            service.running_since = now
            service.claimed_by = owner
            claimed.append(service)
    return claimed


def release(service: Service, next_at: datetime) -> None:
    """Give up a claim and book `next_at` (unless another loop has taken the claim over meanwhile)."""
    Service.objects.filter(pk=service.pk, running_since=service.running_since).update(
        running_since=None, claimed_by="", next_due_at=next_at
    )


def finish(services: list[Service], now: datetime | None = None) -> None:
    """Release the claims and book each service's next slot."""
    now = now or timezone.now()
    for service in services:
        slot = next_due(service.due, service.interval, now)
        # A heartbeat's deadline before the next slot is looked at then (its grid moves with it).
        recheck = getattr(service, "recheck_at", None)
        release(service, recheck if recheck is not None and now < recheck < slot else slot)


def round_deadline(services: list[Service], now: datetime) -> float:
    """When a round of `services` must be done (a time.monotonic() value): the start of the earliest next
    slot among them. Its database retries stop there, so the next slot is probed on time."""
    ends = min(next_due(s.due, s.interval, now) for s in services)
    return time.monotonic() + max(0.0, (ends - now).total_seconds())


def probe_timeout(service: Service) -> float:
    """A scheduled probe's timeout: its own, but never past its interval nor DISPATCH_MAX_PROBE_S."""
    return max(0.1, min(service.timeout, service.interval, settings.DISPATCH_MAX_PROBE_S))


def beat(now: datetime | None = None, owner: str = "") -> None:
    """The `dispatcher` heartbeat (/health/status), and the loop's own (`loop:<owner>`: its claims' liveness)."""
    beat_rows((HEARTBEAT, LOOP_PREFIX + owner) if owner else (HEARTBEAT,), now)


def resident_loops(now: datetime | None = None) -> int:
    """How many resident loops (dispatch's qcluster) are alive: the fallback task then has nothing to do."""
    now = now or timezone.now()
    return sum(1 for owner in live_owners(now) if owner.startswith("resident@"))


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
    # This loop's identity in claims and in its `loop:` heartbeat ("resident@…" or "task@…").
    owner: str = field(default_factory=lambda: "task@" + new_owner())
    # Services probed from memory during an outage: the slot after the last one probed. The first claim
    # after the outage books that slot instead of probing the spooled slot again.
    outage_booked: dict[int, datetime] = field(default_factory=dict)
    # Services whose round ended but could not release its claim (the database went away): this loop still
    # holds those claims in the database, and re-takes them as soon as it answers again.
    unreleased: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def pass_once(self, now: datetime | None = None) -> list[Service]:
        now = now or timezone.now()
        self.passes += 1
        claimed: list[Service] = []  # filled claim by claim: a failure midway still knows what it holds
        released: set[int] = set()
        try:
            run_db(self._refresh_known, retry=False)
            # Beat before claiming: another loop must never see this one's fresh claims as a dead loop's.
            run_db(beat, now, self.owner, retry=False)
            with self._lock:
                retake = set(self.unreleased)
            run_db(claim_due, now, self.owner, retake, claimed, retry=False)
            with self._lock:
                self.unreleased -= {s.pk for s in claimed}
            claimed = run_db(self._skip_probed_in_outage, claimed, now, released, retry=False)
        except (DatabaseError, CircuitBreakerError) as exc:
            # Claims already written (each UPDATE commits alone) whose round will not run: this loop holds
            # them in the database, so it re-takes them as soon as it answers, not when they go stale.
            with self._lock:
                self.unreleased |= {s.pk for s in claimed} - released
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
        return claimed

    def _skip_probed_in_outage(self, claimed: list[Service], now: datetime, released: set[int]) -> list[Service]:
        """Claims for slots this loop already probed from memory: book the outage clock's slot instead.

        During an outage `next_due_at` cannot move, so right after it the database still names a slot
        whose result is in the spool. If the outage clock's next slot is due too, probe for that one.
        A booking is dropped only once it is served (released, or kept for the round): if the database goes
        away midway, the claims not yet released are re-taken later and still book the outage clock's slot.
        `released` gets the pks released here.
        """
        keep: list[Service] = []
        served: list[tuple[int, datetime]] = []
        for service in claimed:
            with self._lock:
                booked = self.outage_booked.get(service.pk)
            if booked is None:
                keep.append(service)
                continue
            if booked <= service.due:
                keep.append(service)
            elif booked <= now:
                service.due = booked
                keep.append(service)
            else:
                release(service, booked)
                released.add(service.pk)
            served.append((service.pk, booked))
        with self._lock:
            for pk, booked in served:  # a later booking, made meanwhile, stays
                if self.outage_booked.get(pk) == booked:
                    del self.outage_booked[pk]
        return keep

    def _refresh_known(self) -> None:
        if time.monotonic() - self.known_at > 30 or not self.known:
            self.known = {s.pk: s for s in Service.objects.filter(enabled=True)}
            # The outage clock never goes back: after an outage it is ahead of the database's.
            self.local_due = {
                pk: max(filter(None, (s.next_due_at, self.local_due.get(pk))), default=timezone.now())
                for pk, s in self.known.items()
            }
            self.known_at = time.monotonic()

    def _outage_pass(self, now: datetime) -> None:
        due = [
            s
            for pk, s in self.known.items()
            if self.local_due.get(pk, now) <= now and not (pk in self.inflight and not self.inflight[pk].done())
        ]
        for service in due:
            service.due = self.local_due.get(service.pk, now)
            # Booked whether this loop or another probes the slot: it is served either way.
            self.local_due[service.pk] = next_due(service.due, service.interval, now)
            self._book(service.pk, self.local_due[service.pk])
        due = [s for s in due if outage_claim(s, s.due, now, self.owner)]
        if due:
            self._submit(due, outage=True)
        self._tunnels(now, outage=True)

    def _submit(self, services: list[Service], *, outage: bool) -> None:
        self.probed += len(services)
        if self.executor is None:
            self._round(services, outage, in_thread=False)
            return
        future = self.executor.submit(self._round, services, outage, True)
        for service in services:
            self.inflight[service.pk] = future

    def _book(self, pk: int, slot: datetime) -> None:
        """Note that `pk` was probed up to `slot` (its next slot) outside the database's bookkeeping."""
        with self._lock:
            booked = self.outage_booked.get(pk)
            self.outage_booked[pk] = slot if booked is None else max(booked, slot)

    def _round(self, services: list[Service], outage: bool, in_thread: bool) -> None:
        for service in services:
            service.timeout = probe_timeout(service)
        # Retries (writing the round, releasing its claims) end with the slot: past it the round is spooled.
        deadline = round_deadline(services, timezone.now())
        try:
            rounds.run(services, recover=not outage, deadline=deadline)
        except Exception:  # a failed round must not end the loop; the claim is still released below
            log.exception("Dispatcher: probe round of %s failed", ", ".join(s.name for s in services))
        finally:
            if not outage:
                try:
                    run_db(finish, services, deadline=deadline)
                except (DatabaseError, CircuitBreakerError) as exc:
                    # The claims stay in the database; this loop knows the round ended. It books the slot
                    # after the one just probed, and re-takes the claims as soon as the database answers.
                    log.warning("Dispatcher: could not release claims (%s); re-taking them later", type(exc).__name__)
                    now = timezone.now()
                    for service in services:
                        self._book(service.pk, next_due(service.due, service.interval, now))
                    with self._lock:
                        self.unreleased |= {s.pk for s in services}
            if in_thread:
                connections.close_all()

    def _tunnels(self, now: datetime, *, outage: bool = False) -> None:
        if self.executor is None:
            self._watch_tunnels(now, outage)
        elif self.tunnels is None or self.tunnels.done():
            self.tunnels = self.executor.submit(self._tunnels_in_thread, now, outage)

    @staticmethod
    def _watch_tunnels(now: datetime, outage: bool) -> None:
        if outage:
            watchdog.run_due_outage(now)  # from memory; its events go to the spool
        else:
            watchdog.run_due(now)

    @classmethod
    def _tunnels_in_thread(cls, now: datetime, outage: bool) -> None:
        try:
            cls._watch_tunnels(now, outage)
        except Exception:
            log.exception("Dispatcher: tunnel watchdog failed")
        finally:
            connections.close_all()

    def run(
        self, seconds: float | None = None, tick: float | None = None, stopping: Callable[[], bool] | None = None
    ) -> str:
        """Pass every tick until `seconds` have passed, SIGTERM (main thread only), or `stopping()` is true
        (checked every CLUSTER_CHECK_S; default: this worker's qcluster is stopping)."""
        seconds = settings.DISPATCH_LOOP_SECONDS if seconds is None else seconds
        tick = settings.DISPATCH_TICK_MS / 1000 if tick is None else tick
        stopping = stopping or cluster_stopping
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
                    if stopping():
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


def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(2, min(settings.PROBE_CONCURRENCY, 16)), thread_name_prefix="dispatch")


def run_dispatcher(seconds: float | None = None, tick: float | None = None) -> str:
    """The `opsportal-dispatch` task: the fallback claim loop, when no resident loop is alive."""
    alive = run_db(resident_loops)
    if alive:
        return f"dispatcher not needed: {alive} resident loop(s) alive"
    log.info("Dispatcher: no resident loop alive; this task runs the claim loop")
    return Dispatcher(executor=_pool()).run(seconds, tick)


def start_resident(stopping: Callable[[], bool]) -> threading.Thread:
    """Start the resident claim loop (dispatch's `qcluster`, in its main process) until `stopping()` is true.

    Not a daemon thread: at exit the interpreter waits for it, so the round in flight finishes and its
    claims are released (rounds are bounded by probe_timeout()).
    """
    dispatcher = Dispatcher(executor=_pool(), owner="resident@" + new_owner())

    def loop() -> None:
        log.info("Dispatcher: resident loop %s started", dispatcher.owner)
        summary = dispatcher.run(math.inf, stopping=stopping)
        log.info("Dispatcher: resident loop %s ended: %s", dispatcher.owner, summary)

    thread = threading.Thread(target=loop, name="opsportal-dispatcher", daemon=False)
    thread.start()
    return thread


# --- liveness --------------------------------------------------------------------------
class SchedulerStatus(TypedDict):
    """`scheduler` of /health/status."""

    status: str  # ok | late | unknown
    lastRunAt: str | None
    lagSeconds: float | None


def scheduler_status(now: datetime | None = None) -> SchedulerStatus:
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


def apply_scheduler_status(overall: str, scheduler: SchedulerStatus | dict[str, Any] | None = None) -> str:
    """The overall status with the scheduler's liveness applied: late makes `healthy` `degraded`."""
    scheduler = scheduler if scheduler is not None else scheduler_status()
    if scheduler.get("status") == "late" and overall == HEALTHY:
        return DEGRADED
    return overall


apply_scheduler_to_overall = apply_scheduler_status


def scheduler_late(now: datetime | None = None) -> bool:
    """Emit `scheduler_late` once per late streak (the dispatcher's heartbeat is old)."""
    status = scheduler_status(now)
    if status["status"] != "late":
        return False
    beat = SchedulerHeartbeat.objects.get(name=HEARTBEAT).last_run_at
    if Event.objects.filter(kind=Event.Kind.SCHEDULER_LATE, created_at__gte=beat).exists():
        return False
    Event.emit(
        Event.Kind.SCHEDULER_LATE,
        f"The probe scheduler is late ({status['lagSeconds']:.0f} s since its last pass)",
        subject="scheduler",
        body="No probes run while it is late: check the qcluster process.",
        lastRunAt=status["lastRunAt"],
    )
    return True
