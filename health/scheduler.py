"""The probe dispatcher and its heartbeat. INTERFACE STUB: the scheduling issue (#6) implements it."""

from __future__ import annotations

from typing import Any


def scheduler_status() -> dict[str, Any]:
    """`scheduler` of /health/status: {"status": "ok|late|unknown", "lastRunAt", "lagSeconds"}."""
    return {"status": "unknown", "lastRunAt": None, "lagSeconds": None}
