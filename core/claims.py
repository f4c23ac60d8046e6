"""Claims: who does a piece of scheduled work, decided by one conditional UPDATE.

A caller reads a row, then updates it only where the fields it read (`next_due_at`, `running_since`, …)
still hold those values. Of several callers racing for one row — threads, dispatcher loops, qclusters on
one PostgreSQL — only the first changes it (row count 1); the others see 0 and leave the work alone. No
lock is held while the work runs, so a caller that dies leaves a claim that others judge stale by its age.
The probe dispatcher (services) and the tunnel watchdog (tunnels) both claim through here.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, Q, QuerySet


def unchanged(field: str, value: Any) -> Q:
    """`field` still holds `value` (None compares as IS NULL, as SQL needs)."""
    return Q(**{f"{field}__isnull": True}) if value is None else Q(**{field: value})


def claim(rows: QuerySet[Model], *, read: dict[str, Any], values: dict[str, Any], where: Q | None = None) -> bool:
    """Set `values` on the one row of `rows` if every field in `read` still holds what was read (and `where`
    holds): True when this caller won the row."""
    for field, value in read.items():
        rows = rows.filter(unchanged(field, value))
    if where is not None:
        rows = rows.filter(where)
    return rows.update(**values) == 1
