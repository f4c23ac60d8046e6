"""Rows looked up by name, all or none: the one rule behind `runprobes NAME`, `recover NAME`, the API's
`services` and `watchtunnels NAME` — every name must exist, or nothing runs and the error names the missing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import models


class NamedQuerySet(models.QuerySet):
    def named(self, names: Iterable[str]) -> list[Any]:
        """The rows named, in the order given (a name given twice once). Raises the model's DoesNotExist
        ("unknown service: a, b"), its `missing` the names not found, when any is not a row."""
        wanted = list(dict.fromkeys(names))
        found = {row.name: row for row in self.filter(name__in=wanted)}
        missing = [n for n in wanted if n not in found]
        if missing:
            error: ObjectDoesNotExist = self.model.DoesNotExist(
                f"unknown {self.model._meta.verbose_name}: " + ", ".join(missing)
            )
            error.missing = missing  # type: ignore[attr-defined]
            raise error
        return [found[n] for n in wanted]
