"""The recovery engine. INTERFACE STUB: the recovery issue (#4) implements these functions.

Callers (runprobes, the scheduled round, POST /health/recover, the dashboard's button,
`manage.py recover`) use only these entry points.
"""

from __future__ import annotations

from typing import Any


class RecoveryNotAvailable(NotImplementedError):
    """Raised until the engine lands; the API answers 501 for it."""


def auto_recover(round_result: Any) -> list[dict[str, Any]]:
    """After a probe round: start recovery for unhealthy services, honouring the policy."""
    return []


def recover_services(
    names: list[str] | None,
    *,
    trigger: str,
    user: Any = None,
    via: str = "",
    force: bool = False,
) -> list[dict[str, Any]]:
    """Recover the named services (None: those that need it). Returns one result dict per service:
    {"service", "timestamp", "success", "skipped", "reason", "outcome", "attempt"}.
    Raises health.models.Service.DoesNotExist for an unknown name (nothing is run then)."""
    raise RecoveryNotAvailable("the recovery engine is not available yet")
