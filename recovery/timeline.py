"""recovery's part of an incident's timeline (health.timeline): each attempt in the incident's span, with its
outcome, its verification and the evidence captured before it. Registered in recovery's AppConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterable

from health.timeline import RECOVERY, Span, TimelineEntry, register, username
from recovery.models import RecoveryAttempt

Outcome = RecoveryAttempt.Outcome
# For operators only (health.timeline.TimelineEntry.private): what the action printed, what it destroyed.
PRIVATE = frozenset({"actionDetail", "evidence"})


def _title(attempt: RecoveryAttempt) -> str:
    action = f"Recovery by {attempt.action_kind}" if attempt.action_kind else "Recovery"
    if attempt.outcome == Outcome.SUCCEEDED:
        return f"{action}: fixed (verified)"
    if attempt.outcome == Outcome.FAILED:
        if attempt.action_ok is False:
            return f"{action}: failed (the action failed)"
        if attempt.verified is False:
            return f"{action}: not fixed (verification failed)"
        return f"{action}: failed"
    if attempt.skipped:
        return f"Recovery skipped ({attempt.outcome.removeprefix('skipped_')})"
    if attempt.outcome == Outcome.ABANDONED:
        return f"{action}: abandoned"
    return f"{action}: running"


def attempts_source(s: Span) -> Iterable[TimelineEntry]:
    """One query: the service's attempts that started in the span (a critical service's may start on SOFT)."""
    attempts = (
        RecoveryAttempt.objects.filter(service_id=s.service_id, started_at__gte=s.start, started_at__lte=s.end)
        .select_related("requested_by")
        .order_by("started_at", "pk")
    )
    for attempt in attempts:
        data = {
            "attempt": attempt.pk,
            "outcome": attempt.outcome,
            "trigger": attempt.trigger,
            "by": username(attempt.requested_by) or attempt.requested_via or None,
            "action": attempt.action_kind or None,
            "actionOk": attempt.action_ok,
            "actionDetail": attempt.action_detail,
            "verified": attempt.verified,
            "verifyDetail": attempt.verify_detail,
            "finishedAt": attempt.finished_at.isoformat() if attempt.finished_at else None,
            "durationMs": attempt.duration_ms,
        }
        if attempt.evidence:
            data["evidence"] = attempt.evidence
        yield TimelineEntry(attempt.started_at, RECOVERY, _title(attempt), attempt.detail, data, PRIVATE)


def register_source() -> None:
    register(attempts_source)
