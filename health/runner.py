"""Run probes concurrently and record what they found.

A probe round: build each service's probe, run them in a thread pool (a slow or
hanging target costs only its own timeout), then in one transaction write every
ProbeResult in bulk, advance each Service's state, record state changes and open
or resolve incidents. Probes never touch state; this module does.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, connections, transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import spool as _spool
from core.bulk import bulk_set
from core.db import DB_ERRORS, run_db, unavailable
from core.spec import scrub
from health import flapping, maintenance, rollups
from health.events import hold_reason
from health.models import (
    HARD,
    HEALTHY,
    PAUSED,
    UNKNOWN,
    Event,
    Incident,
    ProbeResult,
    Service,
    StateChange,
    Transition,
    overall_status,
)
from health.probes import registry
from health.probes.base import (
    DEGRADED,
    DOWN,
    FIX_MARK,
    MISCONFIGURED,
    UP,
    ProbeConfigError,
    ProbeError,
    ProbeOutcome,
    config_fix,
    fix_of,
)

log = logging.getLogger("opsportal.health")

# Time a round waits beyond the longest timeout before calling a probe hung.
GRACE_SECONDS = 2.0


@dataclass
class RoundResult:
    services: list[Service]
    outcomes: dict[str, ProbeOutcome]
    transitions: list[Transition]
    status: str
    started_at: datetime
    duration_s: float

    @property
    def exit_code(self) -> int:
        return {"healthy": 0, DEGRADED: 1}.get(self.status, 2)

    def as_dict(self) -> dict:
        """The shape `/health/status` uses for `status` and `services`."""
        return {
            "status": self.status,
            "timestamp": self.started_at.isoformat(),
            "services": {s.name: s.status_dict() for s in self.services},
        }


def probe_once(service: Service) -> ProbeOutcome:
    """Run one service's probe: a failure is a `down` outcome, a configuration error `misconfigured` (with its fix)."""
    start = time.perf_counter()
    probe = None
    try:
        probe = registry.get(service.kind)(service.settings, timeout=service.timeout, service_name=service.name)
        outcome = probe.run()
    except KeyError:
        message = f"config error: unknown kind {service.kind!r}"
        outcome = ProbeOutcome(MISCONFIGURED, None, f"{message}{FIX_MARK}{config_fix(message)}")
    except ProbeConfigError as exc:
        # Said before the cut to 500 characters would lose it: the fix is what a person needs.
        fix = FIX_MARK + config_fix(str(exc))
        # Scrubbed whole before the cut: a secret across it would leave its head behind, unmatched.
        message = scrub(str(exc), probe.secrets if probe is not None else [])
        outcome = ProbeOutcome(MISCONFIGURED, None, message[: 500 - len(fix)] + fix)
    except ProbeError as exc:
        outcome = ProbeOutcome(
            DOWN, (time.perf_counter() - start) * 1000, str(exc), cert_expires_at=exc.cert_expires_at
        )
    except Exception as exc:  # a bug in a probe must not stop the round
        log.exception("probe %s crashed", service.name)
        outcome = ProbeOutcome(DOWN, None, f"internal error: {type(exc).__name__}")
    if probe is not None:
        outcome.secrets.extend(probe.secrets)
    if outcome.status == UP and service.degraded_latency_ms and (outcome.latency_ms or 0) > service.degraded_latency_ms:
        outcome.status = DEGRADED
        outcome.detail = f"slow: {outcome.latency_ms:.0f} ms > {service.degraded_latency_ms} ms; {outcome.detail}"
    outcome.detail = scrub(outcome.detail, outcome.secrets)[:500]
    return outcome


def _probe_in_thread(service: Service) -> ProbeOutcome:
    try:
        return probe_once(service)
    finally:
        # A worker thread that touched the ORM (the `database` probe) must not leak its connection.
        connections.close_all()


def run_probes(services: list[Service]) -> dict[str, ProbeOutcome]:
    """Run the probes concurrently; a probe still running past its timeout is reported as down."""
    if not services:
        return {}
    workers = min(settings.PROBE_CONCURRENCY, len(services))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
    try:
        futures = {pool.submit(_probe_in_thread, s): s for s in services}
        # Every probe enforces its own timeout; this bound catches one that does not.
        waves = -(-len(services) // workers)
        limit = max(s.timeout for s in services) * waves + GRACE_SECONDS
        done, _ = wait(futures, timeout=limit)
        outcomes: dict[str, ProbeOutcome] = {}
        for future, service in futures.items():
            if future in done:
                outcomes[service.name] = future.result()
            else:
                future.cancel()
                outcomes[service.name] = ProbeOutcome(
                    DOWN, None, f"probe did not finish within {service.timeout:g} s (hung)"
                )
        return outcomes
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


STATE_FIELDS = [
    "status",
    "state_type",
    "consecutive_failures",
    "consecutive_successes",
    "last_checked_at",
    "last_latency_ms",
    "last_detail",
    "last_error",
    "status_changed_at",
    "in_maintenance",
    "flap_history",
    "flap_percent",
    "flapping",
    "cert_expires_at",
]


@transaction.atomic
def record(services: list[Service], outcomes: dict[str, ProbeOutcome], now: datetime) -> list[Transition]:
    """Write results, advance state and open/resolve incidents: a constant number of queries."""
    transitions: list[Transition] = []
    results: list[ProbeResult] = []
    changes: list[StateChange] = []
    flaps: list[Event] = []
    maintenance.apply(services, now)  # a service in a window is paused: stored, no incident, no recovery
    for service in services:
        outcome = outcomes[service.name]
        service.recheck_at = outcome.recheck_at  # read by dispatch.scheduler.finish
        results.append(
            ProbeResult(
                service=service,
                checked_at=now,
                status=outcome.status,
                latency_ms=outcome.latency_ms,
                detail=outcome.detail,
                maintenance=service.is_paused,  # not counted in uptime (health.rollups)
            )
        )
        t = service.apply_outcome(outcome, now)
        transitions.append(t)
        flap = flapping.note(service, outcome.status)
        if flap:
            flaps.append(_flap_event(service, flap, now))
        if t.changed and service.status == MISCONFIGURED:  # once per streak, never an incident
            flaps.append(_misconfigured_event(service, now))
        if t.changed:
            changes.append(
                StateChange(
                    service=service,
                    created_at=now,
                    old_status=t.old_status,
                    old_type=t.old_type,
                    new_status=service.status,
                    new_type=service.state_type,
                    detail=outcome.detail,
                )
            )
    ProbeResult.objects.bulk_create(results)
    StateChange.objects.bulk_create(changes)
    bulk_set(services, STATE_FIELDS)
    _incidents(transitions, now)
    Event.objects.bulk_create(flaps)
    return transitions


def _flap_event(service: Service, change: str, now: datetime) -> Event:
    started = change == flapping.STARTED
    log.warning("%s: flapping %s (%.1f %% state change)", service.name, change, service.flap_percent)
    return Event.build(
        Event.Kind.FLAPPING_STARTED if started else Event.Kind.FLAPPING_STOPPED,
        f"{service.name} is flapping" if started else f"{service.name} stopped flapping; now {service.status}",
        at=now,
        service=service,
        body=(
            "Notifications for it are held until it settles."
            if started
            else f"Notifications resume. Latest: {service.last_detail}"
        ),
        percent=service.flap_percent,
    )


def _misconfigured_event(service: Service, now: datetime) -> Event:
    log.warning("%s: misconfigured (%s)", service.name, service.last_detail)
    problem, _, _ = service.last_detail.partition(FIX_MARK)
    return Event.build(
        Event.Kind.SERVICE_MISCONFIGURED,
        f"{service.name} is misconfigured: {problem}",
        at=now,
        service=service,
        body=f"{problem}. Fix: {fix_of(service.last_detail)}. Until then it shows as misconfigured: "
        "a configuration problem, not an outage (no incident, no recovery, not counted as downtime).",
        fix=fix_of(service.last_detail),
    )


def _parent_incidents(incidents: list[Incident]) -> dict[int, Incident]:
    """For each new incident, the open incident of a service it depends on (the cause), if any."""
    through = Service.depends_on.through
    edges = list(
        through.objects.filter(from_service_id__in=[i.service_id for i in incidents]).values_list(
            "from_service_id", "to_service_id"
        )
    )
    if not edges:
        return {}
    parents = Incident.objects.filter(service_id__in=[p for _, p in edges], resolved_at__isnull=True)
    open_by_service = {i.service_id: i for i in parents.select_related("service")}
    found: dict[int, Incident] = {}
    for child, parent in sorted(edges):
        if parent in open_by_service and child not in found:
            found[child] = open_by_service[parent]
    return found


def _create_each(incidents: list[Incident]) -> list[Incident]:
    """Create one by one, skipping a service whose open incident appeared since it was looked for."""
    created = []
    for incident in incidents:
        try:
            with transaction.atomic():
                incident.save(force_insert=True)
        except IntegrityError:
            log.info("%s: an incident was declared meanwhile; keeping it", incident.service.name)
            continue
        created.append(incident)
    return created


def _incidents(transitions: list[Transition], now: datetime) -> None:
    opening = [t.service for t in transitions if t.became_hard_down and not t.service.is_paused]
    adopted: set[int] = set()  # HARD down with an incident already open (a declared one): kept, not doubled
    recovered = [t.service.pk for t in transitions if t.recovered]
    if recovered:
        # A declared incident (a person opened it: health.incidents) is closed by a person, never by a probe.
        closing = list(
            Incident.objects.filter(
                service_id__in=recovered, resolved_at__isnull=True, declared_by__isnull=True
            ).select_related("service")
        )
        Incident.objects.filter(pk__in=[i.pk for i in closing]).update(resolved_at=now)
        Event.objects.bulk_create(
            Event.build(
                Event.Kind.INCIDENT_RESOLVED,
                f"{i.service.name} is {i.service.status} again",
                at=now,
                service=i.service,
                body=i.service.last_detail,
                incident=i.pk,
                openedAt=i.opened_at.isoformat(),
                # A child's incident was never announced (its parent's was): its end is not either.
                held="parent incident" if i.parent_id else hold_reason(i.service),
            )
            for i in closing
        )
    if opening:
        already = set(
            Incident.objects.filter(service__in=opening, resolved_at__isnull=True).values_list("service_id", flat=True)
        )
        adopted = already
        new = [
            Incident(
                service=s,
                opened_at=now,
                severity=Incident.Severity.CRITICAL if s.critical else Incident.Severity.WARNING,
                cause=s.last_detail,
                last_error=s.last_error,
            )
            for s in opening
            if s.pk not in already
        ]
        try:
            with transaction.atomic():
                Incident.objects.bulk_create(new)
        except IntegrityError:
            # A person declared one of these meanwhile (one_open_incident_per_service): keep theirs.
            new = _create_each(new)
        # Dependencies: a child's incident is linked to its parent's, and its notification held.
        parents = _parent_incidents(new)
        for incident in new:
            incident.parent = parents.get(incident.service_id)
        bulk_set([i for i in new if i.parent], ["parent"])
        Event.objects.bulk_create(
            Event.build(
                Event.Kind.INCIDENT_OPENED,
                f"{i.service.name} is down",
                at=now,
                service=i.service,
                body=i.cause,
                severity=i.severity,
                incident=i.pk,
                parent=i.parent.service.name if i.parent else None,
                held=hold_reason(i.service, i.parent.service.name if i.parent else ""),
            )
            for i in new
        )
        for incident in new:
            log.warning("Incident opened for %s: %s", incident.service.name, incident.cause)
    # Keep the latest error on incidents that stay open, and on an open (declared) one a HARD down adopted.
    still_down = {
        t.service.pk: t.service
        for t in transitions
        if t.service.status == DOWN and (not t.became_hard_down or t.service.pk in adopted)
    }
    if still_down:
        stale = [
            i
            for i in Incident.objects.filter(service_id__in=list(still_down), resolved_at__isnull=True)
            if i.last_error != still_down[i.service_id].last_error
        ]
        for incident in stale:
            incident.last_error = still_down[incident.service_id].last_error
        bulk_set(stale, ["last_error"])


def record_durably(
    services: list[Service], outcomes: dict[str, ProbeOutcome], now: datetime, *, deadline: float | None = None
) -> list[Transition]:
    """record() through the database hardening (core.db): transient errors are retried; when the
    database stays unwritable the round is spooled (core.spool) and replayed in order once it is back.

    `deadline` (a `time.monotonic()` value; the dispatcher passes the end of the round's slot): no retry
    backoff runs past it, so a round never holds its services into their next slot; past it, it is spooled.
    """
    before = [{f: getattr(s, f) for f in STATE_FIELDS} for s in services]
    spool = _spool.default_spool()

    def restore() -> None:
        for service, state in zip(services, before, strict=True):
            for name, value in state.items():
                setattr(service, name, value)

    def attempt() -> list[Transition]:
        # Older spooled rounds first, so results stay in order; one unit with the write, so one deadline
        # (and one breaker count per try) covers both.
        if spool.pending():
            spool.replay()
        restore()  # a failed try already advanced the in-memory state
        return record(services, outcomes, now)

    try:
        return run_db(attempt, deadline=deadline)
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        payload = {
            "checkedAt": now,
            "results": [
                {
                    "service": s.pk,
                    "status": outcomes[s.name].status,
                    "latencyMs": outcomes[s.name].latency_ms,
                    "detail": outcomes[s.name].detail,
                }
                for s in services
            ],
        }
        kept = _spool.default_spool().append("probe_round", payload)  # False: dropped (spool full), counted there
        log.warning(
            "Database unwritable (%s): probe round of %s %s",
            type(exc).__name__,
            plural(len(services), "service"),
            "spooled" if kept else "dropped (spool full)",
        )
        restore()
        return [s.apply_outcome(outcomes[s.name], now) for s in services]


def replay_round(payload: dict) -> None:
    by_pk = Service.objects.in_bulk([r["service"] for r in payload["results"]])
    rows = [(by_pk[r["service"]], r) for r in payload["results"] if r["service"] in by_pk]
    outcomes = {s.name: ProbeOutcome(r["status"], r["latencyMs"], r["detail"]) for s, r in rows}
    checked_at = parse_datetime(payload["checkedAt"])
    record([s for s, _ in rows], outcomes, checked_at)
    rollups.invalidate([s.pk for s, _ in rows], checked_at)  # an hour rolled up meanwhile is rebuilt with these


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# The order states are counted in ("3 up, 1 degraded, 2 down"); a state with no service is left out.
STATE_ORDER = (UP, DEGRADED, DOWN, MISCONFIGURED, UNKNOWN, PAUSED)
NAMES_SHOWN = 5  # a round of more services names the first few: the line stays a line


def _tally(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in STATE_ORDER if counts.get(s))


def portal_counts() -> dict[str, int]:
    """Every enabled service's state, counted in one aggregate query (no rows read: cheap at 1,000 services).

    `enabled`: how many; a count per state of those overall_status() counts (not paused, disabled or in
    maintenance); `critical_hard_down`: what makes the portal `down`."""
    counted = Q(enabled=True, paused=False, in_maintenance=False) & ~Q(status=PAUSED)
    per_state = {f"n_{s}": Count("pk", filter=counted & Q(status=s)) for s in STATE_ORDER if s != PAUSED}
    counts = Service.objects.aggregate(  # aliases apart from the field names, which they would shadow
        n_enabled=Count("pk", filter=Q(enabled=True)),
        n_critical_hard_down=Count("pk", filter=counted & Q(critical=True, status=DOWN, state_type=HARD)),
        **per_state,
    )
    return {name.removeprefix("n_"): n for name, n in counts.items()}


def _read_portal_counts() -> dict[str, int] | None:
    """portal_counts(), or None when the database is away: never a wait on a database the round just found
    away (its results are in the spool), never a retry (through the breaker, which fails fast when open)."""
    if _spool.default_spool().pending():
        return None
    try:
        return run_db(portal_counts, retry=False)
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        return None


def portal_words(counts: dict[str, int]) -> str:
    """The portal's overall_status() from portal_counts(), in words: `portal overall degraded (2 down)`."""
    counted = sum(counts.get(s, 0) for s in STATE_ORDER if s != PAUSED)
    if counts["critical_hard_down"]:
        overall = DOWN
    elif counts.get(UP, 0) == counted:
        overall = HEALTHY
    else:
        overall = DEGRADED
    rest = _tally({s: n for s, n in counts.items() if s in STATE_ORDER and s not in (UP, PAUSED)})
    return f"portal overall {overall}" + (f" ({rest})" if rest else "")


def round_summary(services: list[Service], duration_s: float, *, everything: bool = False) -> str:
    """The round's log line: which services it probed, out of how many, what they are now, and the portal's
    overall status (a round of a few services says nothing of the others: it must not read as the portal's).

    `everything`: the round probed every enabled service, so the portal's counts are the round's own."""
    n = len(services)
    if n == 0:
        return f"Probe round: no services to probe in {duration_s:.2f} s"
    states = Counter(s.status for s in services)
    total: int | None = n
    if everything:
        portal = f"portal overall {overall_status(services)}"
    else:
        counts = _read_portal_counts()
        if counts is None:
            total, portal = None, "portal overall unknown (database unavailable)"
        else:
            # A disabled service probed by name (`runprobes old`) is one more, not one of the enabled ones.
            total = counts["enabled"] + sum(1 for s in services if not s.enabled)
            portal = portal_words(counts)
    names = ", ".join(s.name for s in services[:NAMES_SHOWN]) + (
        f", +{n - NAMES_SHOWN} more" if n > NAMES_SHOWN else ""
    )
    if total is None:  # out of how many is not known
        which = f"{plural(n, 'service')} ({names})"
    elif n >= total:
        which = f"the only service ({names})" if n == 1 else f"all {n} services"
    else:
        which = f"{n} of {total} services ({names})"
    return f"Probe round of {which} in {duration_s:.2f} s: {_tally(states)}; {portal}"


def select_services(names: Iterable[str] | None = None) -> list[Service]:
    """The services to probe: those named (unknown names raise), else every enabled one."""
    names = list(names or [])
    return Service.objects.named(names) if names else list(Service.objects.filter(enabled=True))


def run_round(services: list[Service] | None = None, *, deadline: float | None = None) -> RoundResult:
    """One probe round: probe and record (dispatch.rounds adds auto-recovery on top).

    `deadline` (time.monotonic()) bounds the database retries of writing the round (record_durably).
    """
    if not connection.in_atomic_block:  # inside a transaction Django would close the connection under it
        close_old_connections()
    everything = services is None  # every enabled service: the round is the portal, no count query needed
    if services is None:
        services = select_services()
    started = timezone.now()
    t0 = time.perf_counter()
    outcomes = run_probes(services)
    now = timezone.now()
    transitions = record_durably(services, outcomes, now, deadline=deadline)
    result = RoundResult(
        services=services,
        outcomes=outcomes,
        transitions=transitions,
        # The probed set decides: `runprobes web` answers for web alone, as a Nagios check does.
        status=overall_status(services),
        started_at=started,
        duration_s=time.perf_counter() - t0,
    )
    if log.isEnabledFor(logging.INFO):  # the portal's counts cost a query: only when the line is written
        log.info("%s", round_summary(services, result.duration_s, everything=everything))
    for t in transitions:
        if t.changed:
            s = t.service
            level = logging.WARNING if s.status == DOWN else logging.INFO
            log.log(
                level,
                "%s: %s/%s -> %s/%s (%s)",
                s.name,
                t.old_status,
                t.old_type,
                s.status,
                s.state_type,
                s.last_detail,
            )
    return result
