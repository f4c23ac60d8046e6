"""The tunnel watchdog. INTERFACE STUB: the tunnel issue (#5) implements it."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def run_due(now: datetime | None = None) -> list[Any]:
    """Claim the tunnels whose check is due (conditional UPDATE on next_due_at) and check each once."""
    return []


def restart_for_recovery(tunnel_name: str) -> tuple[bool, str]:
    """Restart a tunnel on behalf of a recovery action (honours the hourly limit)."""
    raise NotImplementedError("the tunnel watchdog is not available yet")
