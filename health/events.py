"""Outbox rules the domain decides when it writes an event: whether notifications about it are held.

The rows themselves are built by `Event.build` (one place for every writer); notify sends them.
"""

from __future__ import annotations

from typing import Any

from health.models import Event, Service


def hold_reason(service: Service | None, parent: str = "") -> str:
    """Why notifications about this service are held now ("" when they are not)."""
    if service is None:
        return ""
    if service.is_paused:
        return "maintenance"
    if service.flapping:
        return "flapping"
    if parent:
        return f"parent {parent} is down"
    return ""


def write_breaker_events(pending: list[tuple[str, str, dict[str, Any]]], using: str) -> None:
    """core.db's event writer: the database breaker's queued state changes as outbox rows."""
    Event.objects.using(using).bulk_create(
        Event.build(kind, title, subject="database", **data) for kind, title, data in pending
    )
