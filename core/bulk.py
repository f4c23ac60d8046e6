"""Fast bulk UPDATE of many rows, each with its own values.

Django's bulk_update builds a CASE WHEN expression per field and row; for a probe round
of 1,000 services that costs about 2 s of Python. One parameterised UPDATE run with
executemany costs milliseconds on SQLite and PostgreSQL (psycopg 3 pipelines it).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connections, models


def bulk_set(objs: Sequence[models.Model], fields: Sequence[str], using: str = "default") -> int:
    """UPDATE each object's `fields` to its in-memory values; returns the number of rows."""
    if not objs:
        return 0
    model = type(objs[0])
    meta = model._meta
    connection = connections[using]
    columns = [meta.get_field(name) for name in fields]
    qn = connection.ops.quote_name
    assignments = ", ".join(f"{qn(f.column)} = %s" for f in columns)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {qn(meta.pk.column)} = %s"
    params = [[f.get_db_prep_save(getattr(obj, f.attname), connection) for f in columns] + [obj.pk] for obj in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
    return len(params)
