"""The recovery policy: cooldown with exponential backoff, escalation, counter reset, repair loops, caps.

The arithmetic is plain functions; every decision that must hold across processes is a
conditional UPDATE on the service's RecoveryState row (recovery.models).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q, QuerySet

from health.models import DEGRADED, DOWN, MISCONFIGURED, UP, Incident, ProbeResult, Service
from health.probes.base import fix_of
from recovery.models import RecoveryAction, RecoveryAttempt, RecoveryState

Outcome = RecoveryAttempt.Outcome


def backoff_wait(cooldown: float, failures: int, cap: float | None = None) -> float:
    """Seconds before the next attempt: the cooldown, doubled per consecutive failure, capped.

    The cap never shortens the configured cooldown itself.
    """
    cap = settings.RECOVERY_BACKOFF_CAP if cap is None else cap
    if failures <= 0:
        return float(cooldown)
    return float(max(cooldown, min(cap, cooldown * 2 ** min(failures, 32))))


def auto_allowed(action: RecoveryAction, service: Service) -> bool:
    """`auto = true` runs it automatically; unset means only for critical services."""
    return action.auto if action.auto is not None else service.critical


def misconfigured_reason(service: Service) -> str:
    """Why no repair may run ("" when one may): a misconfigured service needs its configuration fixed,
    which no action can do (and a re-probe could never verify)."""
    if service.status != MISCONFIGURED:
        return ""
    fix = fix_of(service.last_detail)
    return "misconfigured: fix the configuration first" + (f" ({fix})" if fix else "")


def eligible_actions(service: Service, *, auto: bool) -> list[RecoveryAction]:
    actions = [a for a in service.recovery_actions.all() if a.enabled]
    if auto:
        actions = [a for a in actions if auto_allowed(a, service)]
    return sorted(actions, key=lambda a: a.position)


def choose_action(actions: list[RecoveryAction], failures: int) -> RecoveryAction:
    """A ladder: the first action, then after each consecutive failure the next one (the last repeats)."""
    return actions[min(failures, len(actions) - 1)]


# engine._crashed's row for an automatic recovery that crashed before its attempt started (a stored value
# no round can use): no action ran, so it must not use up the caps of the services that can be repaired.
# Told apart by its detail and by naming no action: an attempt that crashed after its action ran (its
# detail may start the same) did act, and counts.
CRASHED_PREFIX = "internal error"


def _auto_attempts(now: datetime) -> QuerySet[RecoveryAttempt]:
    """Automatic attempts that ran (skips and crashes before an action ran not counted) in the rolling
    hour before now."""
    recent = RecoveryAttempt.objects.filter(
        trigger=RecoveryAttempt.Trigger.AUTO, started_at__gt=now - timedelta(hours=1)
    )
    crashed_before = Q(detail__startswith=CRASHED_PREFIX, action__isnull=True, action_kind="")
    return recent.exclude(outcome__startswith="skipped_").exclude(crashed_before)


def global_cap_reached(now: datetime) -> bool:
    """At most RECOVERY_MAX_AUTO_PER_HOUR automatic attempts (skips not counted) in any rolling hour."""
    return _auto_attempts(now).count() >= settings.RECOVERY_MAX_AUTO_PER_HOUR


def service_cap() -> int:
    # Never above the global cap (settings refuse that at start; a runtime override is clamped).
    return min(settings.RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR, settings.RECOVERY_MAX_AUTO_PER_HOUR)


def service_cap_reached(service: Service, now: datetime) -> bool:
    """At most RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR automatic attempts at one service in any rolling
    hour, so a crash-looping service cannot use up the global cap while another service waits."""
    return _auto_attempts(now).filter(service=service).count() >= service_cap()


@dataclass
class RepairLoop:
    """A repair that was verified but that the service did not survive for RECOVERY_RESET_AFTER."""

    attempt: RecoveryAttempt
    after: float  # seconds from the end of the repair to the first failed probe
    failures: int  # consecutive failures, this loop included
    escalate: bool  # this loop reached escalate_after: the caller escalates


def note_repair_loop(service: Service, state: RecoveryState, now: datetime) -> RepairLoop | None:
    """Count the last repair as failed (backoff, the action ladder, escalation) when the service failed
    again within RECOVERY_RESET_AFTER of it. The attempt keeps its `succeeded` outcome; its
    `action_data` gets {"repair_loop": true, "failed_again_after": s}. Each loop is counted once."""
    if service.status != DOWN:
        return None
    last = (
        RecoveryAttempt.objects.filter(service=service)
        .exclude(outcome__startswith="skipped_")
        .select_related("action")
        .order_by("-started_at", "-pk")
        .first()
    )
    data = last.action_data if last is not None and isinstance(last.action_data, dict) else {}
    if last is None or last.outcome != Outcome.SUCCEEDED or last.finished_at is None or "repair_loop" in data:
        return None
    failed_at = (
        ProbeResult.objects.filter(
            service=service,
            status=DOWN,
            maintenance=False,
            checked_at__gt=last.finished_at,
            checked_at__lte=last.finished_at + timedelta(seconds=settings.RECOVERY_RESET_AFTER),
        )
        .order_by("checked_at")
        .values_list("checked_at", flat=True)
        .first()
    )
    if failed_at is None:
        return None
    after = round((failed_at - last.finished_at).total_seconds(), 1)
    marked = (
        RecoveryAttempt.objects.filter(pk=last.pk)
        .exclude(action_data__has_key="repair_loop")
        .update(
            action_data={**data, "repair_loop": True, "failed_again_after": after},
            # Said in the detail too, so every list of attempts shows it as it is.
            detail=f"{last.detail}; did not hold: down again {after:g} s later (repair loop)"[:500],
        )
    )
    if not marked:  # another process counted this loop
        return None
    RecoveryState.objects.filter(pk=state.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    state.refresh_from_db()
    failures = state.consecutive_failures
    # The wait runs from the end of the repair, as it does after a failed attempt; never shortened.
    due = last.finished_at + timedelta(seconds=backoff_wait(state.cooldown, failures))
    if state.next_allowed_at is None or state.next_allowed_at < due:
        RecoveryState.objects.filter(pk=state.pk).update(next_allowed_at=due)
    limit = last.action.escalate_after if last.action else RecoveryAction._meta.get_field("escalate_after").default
    escalate = failures >= limit and bool(
        RecoveryState.objects.filter(pk=state.pk, escalated_at__isnull=True).update(escalated_at=now)
    )
    state.refresh_from_db()
    return RepairLoop(last, after, failures, escalate)


def lift_if_acknowledged(state: RecoveryState) -> bool:
    """A person acknowledged the open incident after the escalation: auto-recovery may resume."""
    if state.escalated_at is None:
        return False
    acked = Incident.objects.filter(
        service_id=state.service_id, resolved_at__isnull=True, acknowledged_at__gte=state.escalated_at
    ).exists()
    if not acked:
        return False
    # Conditional, so two processes lifting at once reset the counters once.
    done = RecoveryState.objects.filter(pk=state.pk, escalated_at=state.escalated_at).update(
        escalated_at=None, consecutive_failures=0
    )
    state.refresh_from_db()
    return bool(done)


def note_health(services: Iterable[Service], now: datetime) -> None:
    """After a round: a healthy service lifts its escalation; one healthy for RECOVERY_RESET_AFTER
    seconds gets its failure counters and backoff reset (counters are sticky until then)."""
    healthy = [s for s in services if s.status in (UP, DEGRADED)]
    if not healthy:
        return
    RecoveryState.objects.filter(service__in=healthy, escalated_at__isnull=False).update(escalated_at=None)
    since = now - timedelta(seconds=settings.RECOVERY_RESET_AFTER)
    settled = [s.pk for s in healthy if s.status_changed_at is None or s.status_changed_at <= since]
    for state in RecoveryState.objects.filter(service_id__in=settled, consecutive_failures__gt=0):
        base = state.last_finished_at + timedelta(seconds=state.cooldown) if state.last_finished_at else None
        RecoveryState.objects.filter(pk=state.pk, consecutive_failures=state.consecutive_failures).update(
            consecutive_failures=0, next_allowed_at=base
        )


def skip_reason(state: RecoveryState, now: datetime, *, force: bool) -> tuple[str, str]:
    """Why a claim was refused, read from the state row after the refused UPDATE."""
    name = state.service.name
    if state.running_since is not None:
        return Outcome.SKIPPED_BUSY, f"another recovery of {name} is in progress (since {state.running_since:%H:%M:%S})"
    if state.escalated_at is not None and not force:
        return (
            Outcome.SKIPPED_ESCALATED,
            f"escalated after {state.consecutive_failures} failed attempts: "
            "waiting for an acknowledgement or for the service to recover",
        )
    if state.next_allowed_at is not None and state.next_allowed_at > now and not force:
        wait = (state.next_allowed_at - now).total_seconds()
        return Outcome.SKIPPED_COOLDOWN, f"cooldown: next attempt allowed in {wait:.0f} s"
    return Outcome.SKIPPED_BUSY, f"another recovery of {name} claimed it first"


def claim_filter(now: datetime, *, force: bool) -> Q:
    """The WHERE of the claiming UPDATE: free, and unless forced, out of cooldown and not escalated.

    A claim with an owner is never taken by age: it is freed only by the takeover of a dead owner
    (recovery.engine.abandon_stale, recovery.owner), which first ends what is left of its action. Only a
    claim without one (written before owners existed) is stale after RECOVERY_STALE_AFTER.
    """
    stale = now - timedelta(seconds=settings.RECOVERY_STALE_AFTER)
    q = Q(running_since__isnull=True) | Q(running_since__lt=stale, claimed_by="")
    if not force:
        q &= Q(next_allowed_at__isnull=True) | Q(next_allowed_at__lte=now)
        q &= Q(escalated_at__isnull=True)
    return q
