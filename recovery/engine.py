"""The recovery engine: one code path for automatic, manual, API and watchdog recovery.

Callers (runprobes and the scheduled round through `auto_recover`, POST /health/recover,
the dashboard's button, `manage.py recover`) use only the two entry points below.

One attempt: claim the service's slot (a conditional UPDATE, so one at a time across
processes), run the chosen action, wait `verify_delay`, re-probe through the normal
runner (the result is recorded like any other), then store the outcome, the backoff
counters and, after `escalate_after` failures in a row, the escalation.

An attempt in flight when the database goes away is not lost: its writes after the claim (the
attempt row, the release with the counters, the notification Events, the escalation) go to the
outage spool on a transient error and are replayed in order once the database is back; the
re-probe works from the service as read. Automatic recovery itself does not start during an
outage (the dispatcher's outage rounds run with recover=False): its limits live in the database.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import procs, spool
from core.db import DB_ERRORS, CircuitBreakerError, run_db, unavailable
from core.spec import scrub
from health.models import DEGRADED, DOWN, HEALTHY, PING_SUCCESS, UP, Event, Incident, Ping, Service
from health.probes.push import verify_wait
from health.runner import RoundResult, run_round
from recovery import evidence as evidences
from recovery import owner as owners
from recovery import policy
from recovery.actions import ActionError, ActionResult
from recovery.actions import registry as action_registry
from recovery.models import RecoveryAction, RecoveryAttempt, RecoveryState
from recovery.results import RecoveryResult

log = logging.getLogger("opsportal.recovery")
Outcome = RecoveryAttempt.Outcome
Trigger = RecoveryAttempt.Trigger
DETAIL_CHARS = 4000
# How often a heartbeat's verification looks for the success ping.
PING_POLL_SECONDS = 0.25


class RecoveryNotAvailable(NotImplementedError):
    """Kept for callers written against the interface stub; the engine no longer raises it."""


def auto_recover(round_result: RoundResult) -> list[RecoveryResult]:
    """After a probe round: recover the unhealthy services that allow it, honouring the policy.

    Critical services recover on SOFT or HARD down (fixing before it becomes real, like Nagios
    event handlers); a non-critical one only with an action marked `auto = true`.
    """
    if not settings.AUTO_RECOVERY_ENABLED:
        return []
    now = timezone.now()
    policy.note_health(round_result.services, now)
    if round_result.status == HEALTHY:
        return []
    down = [s for s in round_result.services if s.status == DOWN and not s.is_paused]
    if not down:
        return []
    abandon_stale()
    by_service: dict[int, list[RecoveryAction]] = {}
    for action in RecoveryAction.objects.filter(service__in=down):
        by_service.setdefault(action.service_id, []).append(action)
    waiting = down_parents(down)
    results = []
    for service in sorted(down, key=lambda s: s.pk in waiting):  # parents first
        # Only services an action is meant to fix automatically are candidates at all.
        if any(policy.auto_allowed(a, service) for a in by_service.get(service.pk, [])):
            if service.pk in waiting:
                reason = f"waiting for {waiting[service.pk]}, which it depends on: recovery starts with the parent"
                results.append(_skip(service, Trigger.AUTO, Outcome.SKIPPED_DISABLED, reason))
                continue
            try:
                results.append(recover_one(service, trigger=Trigger.AUTO))
            except (DatabaseError, CircuitBreakerError):
                raise  # the database's trouble is the whole round's: its caller spools or retries
            except Exception as exc:  # one service's bad value or bug never stops the others' recovery
                results.append(_crashed(service, exc, now))
    return results


def _crashed(service: Service, exc: Exception, since: datetime) -> RecoveryResult:
    """Log and record an automatic recovery that raised (as a failed attempt, its claim released); the round
    goes on."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    # The type and place only: an exception's message may quote a setting (a DSN, a token).
    log.error("Automatic recovery of %s crashed: %s%s", service.name, type(exc).__name__, at)
    reason = f"internal error: {type(exc).__name__}{at}"
    now = timezone.now()
    attempt = RecoveryAttempt.objects.filter(service=service, started_at__gte=since).order_by("-pk").first()
    if attempt is None:  # it crashed before an attempt row was written
        attempt = RecoveryAttempt(
            service=service,
            trigger=Trigger.AUTO,
            outcome=Outcome.FAILED,
            started_at=now,
            finished_at=now,
            duration_ms=0.0,
            detail=reason[:500],
        )
        attempt.store()
        return RecoveryResult.of(attempt, service).crashed(reason)
    # Only a dead owner's attempt and claim (ours: its beat ended with the crash), never another live attempt's.
    dead = bool(attempt.owner) and bool(owners.Liveness(now).dead_reason(attempt.owner))
    if attempt.outcome == Outcome.IN_PROGRESS and dead:
        # The crash came after the claim and even the attempt's own handler could not finish it.
        attempt.finish(Outcome.FAILED, now, detail=reason[:500])
    elif attempt.outcome == Outcome.FAILED and type(exc).__name__ not in attempt.detail:
        attempt.detail = f"{attempt.detail}: {reason}"[:500]
        RecoveryAttempt.objects.filter(pk=attempt.pk).update(detail=attempt.detail)
    if dead:  # the claim it left held, only while still that owner's
        RecoveryState.objects.filter(service=service, claimed_by=attempt.owner).update(
            running_since=None, claim_token="", claimed_by="", last_finished_at=now
        )
    return RecoveryResult.of(attempt, service).crashed(reason)


def down_parents(services: list[Service]) -> dict[int, str]:
    """{service pk: name of a service it depends on that is down}, in one query."""
    edges = Service.depends_on.through.objects.filter(
        from_service_id__in=[s.pk for s in services], to_service__status=DOWN
    ).values_list("from_service_id", "to_service__name")
    return dict(sorted(edges, reverse=True))


def recover_services(
    names: list[str] | None,
    *,
    trigger: str,
    user: Any = None,
    via: str = "",
    force: bool = False,
) -> list[RecoveryResult]:
    """Recover the named services (None: those that need it). Returns one result dict per service:
    {"service", "timestamp", "success", "skipped", "reason", "outcome", "attempt", ...}.
    Raises health.models.Service.DoesNotExist for an unknown name (nothing is run then)."""
    if trigger not in Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r} (expected one of {', '.join(Trigger.values)})")
    services = select(names)
    abandon_stale()
    return [recover_one(s, trigger=trigger, user=user, via=via, force=force) for s in services]


def select(names: list[str] | None) -> list[Service]:
    """The services named (all must exist), or those that need recovery."""
    return Service.objects.named(names) if names else list(needing_recovery())


def needing_recovery() -> Any:
    """Enabled, not paused, down (SOFT or HARD), with an enabled recovery action."""
    return (
        Service.objects.filter(enabled=True, paused=False, status=DOWN, recovery_actions__enabled=True)
        .distinct()
        .order_by("name")
    )


def abandon_stale() -> int:
    """Take over what dead owners left (recovery.owner): their `in_progress` attempts are marked abandoned
    with the reason, what is left of their action is killed (its recorded process group), and their claims
    are freed. An owner is dead when its heartbeat stopped or its process is gone on this host; age alone
    frees only an attempt or claim without an owner (after RECOVERY_STALE_AFTER). A dead owner's action on
    another host cannot be killed from here: its claim is held until its supervisor's deadline. The backoff
    counters are left as they were. Returns the number of attempts abandoned."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.RECOVERY_STALE_AFTER)
    # Claims and attempts are read before the heartbeats: an owner's row exists before its claim does, so a
    # claim seen here whose row is missing below is really a dead (or finished) owner's.
    attempts = list(RecoveryAttempt.objects.filter(outcome=Outcome.IN_PROGRESS).select_related("service"))
    claims = list(RecoveryState.objects.filter(running_since__isnull=False))
    alive = owners.Liveness(now)

    def dead(who: str, since: Any) -> str:
        if who:
            return alive.dead_reason(who)
        stale_after = settings.RECOVERY_STALE_AFTER
        return f"still in progress after {stale_after} s (its process stopped)" if since < cutoff else ""

    held: set[int] = set()  # services whose dead owner's action may still run on another host
    abandoned = 0
    for attempt in attempts:
        reason = dead(attempt.owner, attempt.started_at)
        if not reason:
            continue
        info = owners.orphan(attempt.action_data)
        what = ""
        if info is not None:
            done, what = owners.kill_orphan(info)
            if not done:
                held.add(attempt.service_id)
                log.info(
                    "Recovery of %s: waiting to take over %s: %s",
                    attempt.service.name,
                    attempt_label(attempt, attempt.service.name),
                    what,
                )
                continue
        detail = f"abandoned: {reason}" + (f"; {what}" if what else "")
        done = RecoveryAttempt.objects.filter(pk=attempt.pk, outcome=Outcome.IN_PROGRESS).update(
            outcome=Outcome.ABANDONED, finished_at=now, detail=detail[:500]
        )
        if done:
            abandoned += 1
            log.warning(
                "⚠️ Recovery of %s abandoned (%s, started %s): %s",
                attempt.service.name,
                attempt_label(attempt, attempt.service.name),
                attempt.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                detail,
            )
    for state in claims:
        if state.service_id in held or not dead(state.claimed_by, state.running_since):
            continue
        # Only the claim as read: one taken or released meanwhile is not touched.
        RecoveryState.objects.filter(
            pk=state.pk, claim_token=state.claim_token, running_since=state.running_since
        ).update(running_since=None, claim_token="", claimed_by="")
    owners.forget_dead_owners(now)
    return abandoned


def attempt_label(attempt: RecoveryAttempt, name: str) -> str:
    """How a log line names an attempt: "attempt 3 of web (#8)", the service's own count of attempts (skips
    are not attempts) and the row id (the pk alone reads as a count, and is one over every service)."""
    if attempt.pk is None:
        return f"an attempt of {name} (not recorded yet)"
    try:
        # One indexed count (service, then pk), once an attempt: attempts are minutes apart, never a round's.
        n = (
            RecoveryAttempt.objects.filter(service_id=attempt.service_id, pk__lte=attempt.pk)
            .exclude(outcome__startswith="skipped_")
            .count()
        )
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        return f"attempt #{attempt.pk} of {name}"
    return f"attempt {n} of {name} (#{attempt.pk})"


def recover_one(
    service: Service, *, trigger: str, user: Any = None, via: str = "", force: bool = False
) -> RecoveryResult:
    """One attempt at one service, or a recorded skip that says why not."""
    auto = trigger == Trigger.AUTO
    who = {"requested_by": user if getattr(user, "pk", None) else None, "requested_via": via[:100]}
    now = timezone.now()
    policy.note_health([service], now)  # also when no round ran before (auto-recovery off, a manual call)
    state = RecoveryState.for_service(service)
    loop = policy.note_repair_loop(service, state, now)  # before the claim: its backoff holds for this one
    if loop is not None:
        _loop_events(service, loop)
    policy.lift_if_acknowledged(state)
    if service.is_paused:
        return _skip(service, trigger, Outcome.SKIPPED_DISABLED, "the service is disabled or paused", **who)
    if policy.misconfigured_reason(service):
        return _skip(service, trigger, Outcome.SKIPPED_DISABLED, policy.misconfigured_reason(service), **who)
    actions = policy.eligible_actions(service, auto=auto)
    if not actions:
        what = "automatic " if auto else ""
        return _skip(service, trigger, Outcome.SKIPPED_DISABLED, f"no enabled {what}recovery action", **who)
    if auto and policy.service_cap_reached(service, now):
        reason = (
            f"cap per service: {policy.service_cap()} automatic attempts of {service.name} in the last hour "
            "(RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR)"
        )
        return _skip(service, trigger, Outcome.SKIPPED_COOLDOWN, reason, **who)
    if auto and policy.global_cap_reached(now):
        reason = f"global cap: {settings.RECOVERY_MAX_AUTO_PER_HOUR} automatic attempts in the last hour"
        return _skip(service, trigger, Outcome.SKIPPED_COOLDOWN, reason, **who)
    action = policy.choose_action(actions, state.consecutive_failures)
    where = policy.claim_filter(now, force=force)
    if not RecoveryState.objects.filter(pk=state.pk).filter(where).exists():  # no owner row for a sure skip
        return _refused(state, service, trigger, now, force, who)
    # The owner beats before it claims (another process must never see a fresh claim as a dead owner's), and
    # for as long as the attempt runs, whatever process this is (recovery.owner).
    with owners.OwnerBeat() as owner:
        token = state.claim(now, where, cooldown=action.cooldown, owner=owner)
        if token is None:
            return _refused(state, service, trigger, now, force, who)
        return _claimed(service, action, state, token, owner, trigger, now, who)


def _refused(state: RecoveryState, service: Service, trigger: str, now: Any, force: bool, who: dict) -> RecoveryResult:
    state.refresh_from_db()
    outcome, reason = policy.skip_reason(state, now, force=force)
    return _skip(service, trigger, outcome, reason, **who)


def _claimed(
    service: Service,
    action: RecoveryAction,
    state: RecoveryState,
    token: str,
    owner: str,
    trigger: str,
    now: Any,
    who: dict,
) -> RecoveryResult:
    attempt = RecoveryAttempt(
        service=service, action=action, action_kind=action.kind, trigger=trigger, started_at=now, owner=owner, **who
    )
    try:
        run_db(attempt.save)
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        # The slot is ours: go on. The row is created with its outcome when it finishes (or spooled).
        log.warning("Recovery of %s: attempt row not written yet (%s)", service.name, type(exc).__name__)
    try:
        return _run(service, action, attempt, state, token)
    except BaseException:
        # Never leave the slot held by a crash of our own; the attempt is recorded as failed.
        attempt.finish(Outcome.FAILED, timezone.now(), detail="internal error while recovering")
        state.release(token, last_finished_at=timezone.now())
        raise


def _run(
    service: Service, action: RecoveryAction, attempt: RecoveryAttempt, state: RecoveryState, token: str
) -> RecoveryResult:
    requester = attempt.requested_via or (attempt.requested_by.get_username() if attempt.requested_by else "")
    label = attempt_label(attempt, service.name)
    log.info(
        "🔄 Recovery of %s started: %s (trigger %s%s, %s)",
        service.name,
        action.kind,
        attempt.trigger,
        f" by {requester}" if requester else "",
        label,
    )
    # The action's process group is recorded with the attempt as soon as it runs: a takeover kills it.
    with procs.on_child_start(lambda child: _record_child(attempt, child)):
        result, verify_degraded = run_action(action, service, attempt)
    time.sleep(action.verify_delay)
    status, verify_detail = verify(service, since=attempt.started_at)
    verified = status == UP or (status == DEGRADED and verify_degraded)
    success = result.ok and verified
    now = timezone.now()
    # A success leaves the counters sticky: a repair the service does not survive for RECOVERY_RESET_AFTER
    # counts as failed later (policy.note_repair_loop); note_health resets them once it held.
    failures = state.consecutive_failures if success else state.consecutive_failures + 1
    escalate = not success and failures >= action.escalate_after and state.escalated_at is None
    escalated_at = None if success else (now if escalate else state.escalated_at)
    detail = (
        f"{'fixed' if success else 'not fixed'}: action {'ok' if result.ok else 'failed'}, "
        f"service {status} after {action.verify_delay:g} s"
    )
    outcome = Outcome.SUCCEEDED if success else Outcome.FAILED
    attempt.finish(
        outcome,
        now,
        action_ok=result.ok,
        action_detail=result.detail[:DETAIL_CHARS],
        action_data={**(attempt.action_data or {}), **result.data},
        verified=verified,
        verify_detail=verify_detail[:500],
        detail=detail[:500],
    )
    if attempt.outcome != outcome:
        # Taken over while it ran (its owner looked dead): the takeover's outcome stands, and its claim
        # (only while still ours) is given back without counting this result.
        log.warning(
            "Recovery of %s: %s was taken over while it ran (%s); its result is not recorded",
            service.name,
            label,
            attempt.detail,
        )
        state.release(token, last_finished_at=now)
        return RecoveryResult.of(attempt, service)
    state.release(
        token,
        consecutive_failures=failures,
        last_finished_at=now,
        next_allowed_at=now + timedelta(seconds=policy.backoff_wait(action.cooldown, 0 if success else failures)),
        escalated_at=escalated_at,
    )
    _events(service, attempt, failures, escalate)
    level = logging.INFO if success else logging.WARNING
    mark = "✅" if success else "❌"
    log.log(
        level,
        "%s Recovery of %s %s in %.1f s: %s; %s (%s, %d failed in a row)",
        mark,
        service.name,
        "succeeded" if success else "failed",
        attempt.duration_ms / 1000,
        result.detail.splitlines()[0][:200] if result.detail else "",
        verify_detail[:200],
        label,
        failures,
    )
    return RecoveryResult.of(attempt, service)


def _record_child(attempt: RecoveryAttempt, child: procs.StartedChild) -> None:
    """Note the action's process group (pid + create time, host, the supervisor's deadline) in the attempt."""
    attempt.action_data = {**(attempt.action_data or {}), "process": child.as_dict()}
    if attempt.pk is not None:  # only while in progress: never over a final outcome
        RecoveryAttempt.objects.filter(pk=attempt.pk, outcome=Outcome.IN_PROGRESS).update(
            action_data=attempt.action_data
        )


def run_action(
    action: RecoveryAction, service: Service, attempt: RecoveryAttempt | None = None
) -> tuple[ActionResult, bool]:
    """Run the action; every failure becomes a result (scrubbed of secrets), never an exception. With an
    attempt, the evidence the action is about to destroy is kept in it first (recovery.evidence)."""
    instance = None
    verify_degraded = False
    try:
        instance = action_registry.get(action.kind)(action.settings, service=service, timeout=action.timeout)
        verify_degraded = bool(instance.cfg.get("verify_degraded"))
        if attempt is not None:
            _keep_evidence(attempt, instance, action, service)
        result = instance.run()
    except KeyError:
        result = ActionResult(False, f"config error: unknown action kind {action.kind!r}")
    except ActionError as exc:
        result = ActionResult(False, str(exc))
    except NotImplementedError:
        result = ActionResult(False, f"the {action.kind} action is not available yet")
    except Exception as exc:  # a bug in an action must not leave the attempt open
        log.error("Recovery action %s of %s crashed: %s", action.kind, service.name, type(exc).__name__)
        result = ActionResult(False, f"internal error: {type(exc).__name__}")
    secrets = [*result.secrets, *(instance.secrets if instance else [])]
    result.detail = scrub(result.detail, secrets)
    return result, verify_degraded


def _keep_evidence(attempt: RecoveryAttempt, instance: Any, action: RecoveryAction, service: Service) -> None:
    """Capture the evidence (bounded by the service's evidence_timeout) and write it to the attempt's row at
    once: a crash during the action keeps it. Its failure never stops the repair."""
    try:
        if not instance.captures_evidence():
            return
        attempt.evidence = evidences.capture(instance, service, action.settings)
    except Exception as exc:  # evidence is best effort; the repair goes on
        log.warning("Recovery of %s: evidence not captured: %s", service.name, type(exc).__name__)
        attempt.evidence = {
            **{"captured_at": timezone.now().isoformat(), "took_ms": 0.0, "processes": [], "logs": [], "probe": []},
            "incomplete": f"failed: {type(exc).__name__}",
        }
    if attempt.pk is None:
        return  # the row is created with it when the attempt finishes (or spooled)
    try:
        run_db(
            RecoveryAttempt.objects.filter(pk=attempt.pk, outcome=Outcome.IN_PROGRESS).update,
            evidence=attempt.evidence,
            retry=False,
        )
    except Exception as exc:  # kept in memory: the attempt's final write (or its spooled record) carries it
        log.warning("Recovery of %s: evidence not written yet: %s", service.name, type(exc).__name__)


def verify(service: Service, since: datetime | None = None) -> tuple[str, str]:
    """Probe the service again through the normal runner (recorded like any probe).

    A heartbeat (`push`) cannot be probed into answering: its repair is verified by a success ping that
    arrives after the attempt started (`since`), waited for up to its `verify_timeout` (default its
    `grace`); then the round judges the pings as usual."""
    try:
        fresh = run_db(Service.objects.get, pk=service.pk)
    except (DatabaseError, CircuitBreakerError):
        # The database went away mid-attempt: probe the service as read (the runner spools the result).
        fresh = copy.copy(service)
    if fresh.kind == "push" and since is not None:
        _wait_for_ping(fresh, since)
    run_round([fresh])
    return fresh.status, f"{fresh.status}: {fresh.last_detail}"


def _wait_for_ping(service: Service, since: datetime) -> bool:
    """Wait until a success ping of `service` received after `since` is stored, or its verify timeout ends."""
    deadline = time.monotonic() + verify_wait(service.kind, service.settings)
    while True:
        pinged = Ping.objects.filter(service_id=service.ping_uuid, kind=PING_SUCCESS, received_at__gte=since)
        try:
            if run_db(pinged.exists, retry=False):
                return True
        except DB_ERRORS as exc:
            if not unavailable(exc):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(PING_POLL_SECONDS)


def _notify(kind: str, title: str, service: Service, body: str, **data: Any) -> None:
    Event.emit_or_spool(kind, title, service=service, body=body, **data)


def _events(service: Service, attempt: RecoveryAttempt, failures: int, escalate: bool) -> None:
    if attempt.outcome == Outcome.SUCCEEDED:
        _notify(
            Event.Kind.RECOVERY_SUCCEEDED,
            f"{service.name} recovered by {attempt.action_kind}",
            service,
            attempt.detail,
            attempt=attempt.pk,
            trigger=attempt.trigger,
        )
        return
    _notify(
        Event.Kind.RECOVERY_FAILED,
        f"{service.name}: recovery by {attempt.action_kind} failed ({failures} in a row)",
        service,
        f"{attempt.detail}\n{attempt.action_detail}".strip(),
        attempt=attempt.pk,
        trigger=attempt.trigger,
        failures=failures,
    )
    if escalate:
        escalate_service(service, attempt, failures)


def _loop_events(service: Service, loop: policy.RepairLoop) -> None:
    attempt = loop.attempt
    log.warning(
        "🔁 Recovery of %s did not hold: down again %.0f s after %s (repair loop, %d failed in a row)",
        service.name,
        loop.after,
        attempt_label(attempt, service.name),
        loop.failures,
    )
    _notify(
        Event.Kind.RECOVERY_FAILED,
        f"{service.name}: recovery by {attempt.action_kind} did not hold ({loop.failures} in a row)"[:200],
        service,
        f"down again {loop.after:g} s after a verified repair: counted as failed (a repair loop)",
        attempt=attempt.pk,
        trigger=attempt.trigger,
        failures=loop.failures,
        repairLoop=True,
    )
    if loop.escalate:
        escalate_service(service, attempt, loop.failures)


def escalate_service(service: Service, attempt: RecoveryAttempt, failures: int) -> None:
    """Raise the open incident's severity and ask for a person: the acknowledgement is cleared, so a
    fresh one (which lifts the stop) is needed for the escalation. Spooled (a `recovery_escalation`
    record, replayed through `replay_escalation`) when the database cannot be written."""
    payload = {"service": service.pk, "attempt": attempt.pk, "failures": failures, "at": timezone.now()}
    spool.write_or_spool("recovery_escalation", payload)
    log.error("🚨 Recovery of %s escalated after %d failed attempts; auto-recovery stopped", service.name, failures)


def replay_escalation(payload: dict[str, Any]) -> None:
    service = Service.objects.filter(pk=payload["service"]).first()
    if service is None:  # deleted before a replay: nothing to escalate
        return
    at = payload["at"]
    at = parse_datetime(at) if isinstance(at, str) else at
    failures = payload["failures"]
    incidents = list(Incident.objects.filter(service=service, resolved_at__isnull=True).values_list("pk", flat=True))
    Incident.objects.filter(pk__in=incidents).update(
        severity=Incident.Severity.ESCALATED, acknowledged_at=None, acknowledged_by=None
    )
    Event.emit(
        Event.Kind.RECOVERY_ESCALATED,
        f"{service.name}: recovery failed {failures} times in a row; automatic recovery stopped",
        at=at,
        service=service,
        body="Acknowledge the incident to let automatic recovery try again.",
        attempt=payload["attempt"],
        failures=failures,
        incident=incidents[0] if incidents else None,
    )


def _skip(service: Service, trigger: str, outcome: str, reason: str, **who: Any) -> RecoveryResult:
    """Record a skip. Automatic skips are recorded once per streak, so a long outage is not a row a round."""
    if trigger == Trigger.AUTO:
        latest = RecoveryAttempt.objects.filter(service=service).order_by("-started_at", "-pk").first()
        if latest is not None and latest.trigger == Trigger.AUTO and latest.outcome == outcome:
            log.debug("Recovery of %s skipped again: %s", service.name, reason)
            return RecoveryResult.of(latest, service, reason=reason)
    now = timezone.now()
    attempt = RecoveryAttempt(
        service=service,
        trigger=trigger,
        outcome=outcome,
        started_at=now,
        finished_at=now,
        duration_ms=0.0,
        detail=reason[:500],
        **who,
    )
    attempt.store()  # spooled if the database went away since the decision
    log.info("⏭️ Recovery of %s skipped (%s, trigger %s): %s", service.name, outcome, trigger, reason)
    return RecoveryResult.of(attempt, service, reason=reason)
