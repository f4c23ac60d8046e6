"""Recovery statistics, read from RecoveryAttempt rows (so every process sees the same).

Skips are counted on their own and left out of the success rate: a skip is the policy
working, not a repair that failed.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Avg, Count, Q

from recovery.engine import needing_recovery
from recovery.models import RecoveryAttempt

Outcome = RecoveryAttempt.Outcome
FAILED = (Outcome.FAILED, Outcome.ABANDONED)


def _rate(successful: int, total: int) -> str:
    return f"{(100.0 * successful / total) if total else 0.0:.1f}%"


def recovery_stats() -> dict[str, Any]:
    counts = dict(RecoveryAttempt.objects.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    successful = counts.get(Outcome.SUCCEEDED, 0)
    failed = sum(counts.get(o, 0) for o in FAILED)
    skipped = sum(v for k, v in counts.items() if k.startswith("skipped_"))
    total = successful + failed
    ran = RecoveryAttempt.objects.exclude(outcome__startswith="skipped_").exclude(outcome=Outcome.IN_PROGRESS)
    by_service = dict(ran.values_list("service__name").annotate(n=Count("id")).values_list("service__name", "n"))
    by_action = {
        row["action_kind"] or "-": {
            "total": row["total"],
            "successful": row["ok"],
            "failed": row["total"] - row["ok"],
            "successRate": _rate(row["ok"], row["total"]),
        }
        for row in ran.values("action_kind")
        .annotate(total=Count("id"), ok=Count("id", filter=Q(outcome=Outcome.SUCCEEDED)))
        .order_by("action_kind")
    }
    mean_ms = RecoveryAttempt.objects.filter(outcome=Outcome.SUCCEEDED).aggregate(m=Avg("duration_ms"))["m"]
    return {
        "total": total,
        "successful": successful,
        "failed": failed,
        "skipped": skipped,
        "successRate": _rate(successful, total),
        "byService": by_service,
        "byAction": by_action,
        "byOutcome": counts,
        # Mean duration of a successful attempt: action plus verification.
        "meanTimeToRecoverMs": None if mean_ms is None else round(mean_ms, 1),
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
        "skipped": a.outcome.startswith("skipped_"),
        "trigger": a.trigger,
        "requestedBy": a.requested_by.get_username() if a.requested_by else (a.requested_via or None),
        "action": a.action_kind,
        "actionOk": a.action_ok,
        "verified": a.verified,
        "durationMs": a.duration_ms,
        "detail": a.detail,
        # A verified repair the service did not survive (recovery.policy.note_repair_loop): still `succeeded`.
        "repairLoop": bool((a.action_data or {}).get("repair_loop")) if isinstance(a.action_data, dict) else False,
    }


def history(limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    rows = RecoveryAttempt.objects.select_related("service", "requested_by").order_by("-started_at", "-pk")[
        offset : offset + limit
    ]
    return [attempt_dict(a) for a in rows]


def needs_recovery() -> dict[str, Any]:
    names = list(needing_recovery().values_list("name", flat=True))
    return {"needed": bool(names), "services": names}


def stats_payload(limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """The body of GET /health/recovery-stats."""
    return {"stats": recovery_stats(), "history": history(limit, offset), "needsRecovery": needs_recovery()}
