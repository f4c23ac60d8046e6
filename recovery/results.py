"""What one recovery request came to, typed: the engine returns these, the faces turn them into JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from health.models import Service
    from recovery.models import RecoveryAttempt


class RecoveryResultDict(TypedDict):
    """One entry of POST /health/recover's `results` (docs/api.md)."""

    service: str
    timestamp: str
    success: bool
    skipped: bool
    reason: str
    outcome: str
    attempt: int | None
    action: str
    verified: bool | None
    detail: str
    durationMs: float | None


@dataclass(frozen=True)
class RecoveryResult:
    service: str
    timestamp: str
    success: bool
    skipped: bool
    reason: str
    outcome: str
    attempt: int | None
    action: str
    verified: bool | None
    detail: str
    duration_ms: float | None

    @classmethod
    def of(cls, attempt: RecoveryAttempt, service: Service, *, reason: str = "") -> RecoveryResult:
        """The result an attempt row stands for; a skip's reason is the one given, else the row's detail."""
        skipped = attempt.outcome.startswith("skipped_")
        return cls(
            service=service.name,
            timestamp=attempt.started_at.isoformat(),
            success=attempt.outcome == "succeeded",
            skipped=skipped,
            reason=(reason or attempt.detail) if skipped else "",
            outcome=attempt.outcome,
            attempt=attempt.pk,
            action=attempt.action_kind,
            verified=attempt.verified,
            detail=attempt.detail,
            duration_ms=attempt.duration_ms,
        )

    def crashed(self, reason: str) -> RecoveryResult:
        """This result, as an attempt that raised: failed, with why."""
        return dataclasses.replace(self, success=False, reason=reason)

    def as_dict(self) -> RecoveryResultDict:
        return {
            "service": self.service,
            "timestamp": self.timestamp,
            "success": self.success,
            "skipped": self.skipped,
            "reason": self.reason,
            "outcome": self.outcome,
            "attempt": self.attempt,
            "action": self.action,
            "verified": self.verified,
            "detail": self.detail,
            "durationMs": self.duration_ms,
        }

    # Read like the JSON entry it becomes (r["outcome"]), for scripts and tests written against the API shape.
    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]  # type: ignore[literal-required]

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)
