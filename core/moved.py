"""Moving a model between apps without touching its table: the content types follow it.

Used by the migrations that take a model over (its table keeps its name through `db_table`): the
content type row is renamed rather than created anew, so the permissions granted on the model and
the admin's log entries stay attached to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import migrations


def _relabel(models: list[str], old: str, new: str) -> Callable[[Any, Any], None]:
    def run(apps: Any, schema_editor: Any) -> None:
        content_types = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
        for model in models:
            if not content_types.filter(app_label=new, model=model).exists():
                content_types.filter(app_label=old, model=model).update(app_label=new)

    return run


def move_content_types(models: list[str], old: str, new: str) -> migrations.RunPython:
    """A reversible operation: content types of `models` (lower-case names) from app `old` to app `new`."""
    return migrations.RunPython(_relabel(models, old, new), _relabel(models, new, old))
