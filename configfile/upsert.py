"""One upsert-and-prune by name for every table of the config file (services, tunnels, channels, windows)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models


@dataclass
class Item:
    """One table of the file: the row it names and the column values it sets. `differs` tells whether what
    the row owns besides its columns (recovery actions, a channel's services) changed."""

    name: str
    values: dict[str, Any]
    differs: Callable[[Any], bool] = lambda row: False


def upsert(
    model: type[models.Model],
    items: list[Item],
    changes: Any,
    *,
    prune: bool,
    existing: models.QuerySet | None = None,
    key: str = "name",
) -> tuple[dict[str, Any], set[str]]:
    """Create the rows the file names that do not exist, update those that differ (only the columns the file
    sets: a probe or claim running meanwhile owns the state columns), and with `prune` delete those it no
    longer names. Every name lands in one list of `changes` (created/updated/unchanged/deleted).

    Returns the rows by name and the names created or updated. `key` is the column that holds the name
    (a status page's is `slug`)."""
    rows = {getattr(row, key): row for row in (existing if existing is not None else model.objects.all())}
    stamped = ["updated_at"] if any(f.name == "updated_at" for f in model._meta.fields) else []
    kept: dict[str, Any] = {}
    touched: set[str] = set()
    for item in items:
        row = rows.get(item.name)
        if row is None:
            row = model.objects.create(**{key: item.name}, **item.values)
            changes.created.append(item.name)
            touched.add(item.name)
        elif any(getattr(row, k) != v for k, v in item.values.items()) or item.differs(row):
            for k, v in item.values.items():
                setattr(row, k, v)
            row.save(update_fields=[*item.values, *stamped])
            changes.updated.append(item.name)
            touched.add(item.name)
        else:
            changes.unchanged.append(item.name)
        kept[item.name] = row
    if prune:
        gone = model.objects.exclude(**{f"{key}__in": list(kept)})
        changes.deleted.extend(gone.values_list(key, flat=True))
        gone.delete()
    return kept, touched
