"""The recovery policy: cooldown with exponential backoff, escalation, counter reset, global cap.

The arithmetic is plain functions; every decision that must hold across processes is a
conditional UPDATE on the service's RecoveryState row (recovery.models).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from health.models import DEGRADED, UP, Incident, Service
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


def eligible_actions(service: Service, *, auto: bool) -> list[RecoveryAction]:
    actions = [a for a in service.recovery_actions.all() if a.enabled]
    if auto:
        actions = [a for a in actions if auto_allowed(a, service)]
    return sorted(actions, key=lambda a: a.position)


def choose_action(actions: list[RecoveryAction], failures: int) -> RecoveryAction:
    """A ladder: the first action, then after each consecutive failure the next one (the last repeats)."""
    return actions[min(failures, len(actions) - 1)]


def global_cap_reached(now: datetime) -> bool:
    """At most RECOVERY_MAX_AUTO_PER_HOUR automatic attempts (skips not counted) in any rolling hour."""
    cap = settings.RECOVERY_MAX_AUTO_PER_HOUR
    ran = (
        RecoveryAttempt.objects.filter(trigger=RecoveryAttempt.Trigger.AUTO, started_at__gt=now - timedelta(hours=1))
        .exclude(outcome__startswith="skipped_")
        .count()
    )
    return ran >= cap


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
    """The WHERE of the claiming UPDATE: free (or stale), and unless forced, out of cooldown and not escalated."""
    stale = now - timedelta(seconds=settings.RECOVERY_STALE_AFTER)
    q = Q(running_since__isnull=True) | Q(running_since__lt=stale)
    if not force:
        q &= Q(next_allowed_at__isnull=True) | Q(next_allowed_at__lte=now)
        q &= Q(escalated_at__isnull=True)
    return q
