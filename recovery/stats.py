"""Recovery statistics, read from RecoveryAttempt rows (so every process sees the same)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from health.models import Service
from recovery.models import RecoveryAttempt

Outcome = RecoveryAttempt.Outcome


def recovery_stats() -> dict[str, Any]:
    counts = dict(RecoveryAttempt.objects.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    successful = counts.get(Outcome.SUCCEEDED, 0)
    failed = counts.get(Outcome.FAILED, 0) + counts.get(Outcome.ABANDONED, 0)
    skipped = sum(v for k, v in counts.items() if k.startswith("skipped_"))
    total = successful + failed
    by_service = dict(
        RecoveryAttempt.objects.exclude(outcome__startswith="skipped_")
        .values_list("service__name")
        .annotate(n=Count("id"))
        .values_list("service__name", "n")
    )
    return {
        "total": total,
        "successful": successful,
        "failed": failed,
        "skipped": skipped,
        "successRate": f"{(100.0 * successful / total) if total else 0.0:.1f}%",
        "byService": by_service,
        "isRecovering": counts.get(Outcome.IN_PROGRESS, 0) > 0,
    }


def attempt_dict(a: RecoveryAttempt) -> dict[str, Any]:
    return {
        "id": a.pk,
        "service": a.service.name,
        "timestamp": a.started_at.isoformat(),
        "finishedAt": a.finished_at.isoformat() if a.finished_at else None,
        "outcome": a.outcome,
        "success": a.outcome == Outcome.SUCCEEDED,
        "trigger": a.trigger,
        "action": a.action_kind,
        "durationMs": a.duration_ms,
        "detail": a.detail,
    }


def history(limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    rows = RecoveryAttempt.objects.select_related("service").order_by("-started_at", "-pk")[offset : offset + limit]
    return [attempt_dict(a) for a in rows]


def needs_recovery() -> dict[str, Any]:
    names = list(
        Service.objects.filter(enabled=True, paused=False, critical=True, status="down")
        .order_by("name")
        .values_list("name", flat=True)
    )
    return {"needed": bool(names), "services": names}


def stats_payload(limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """The body of GET /health/recovery-stats."""
    return {"stats": recovery_stats(), "history": history(limit, offset), "needsRecovery": needs_recovery()}
