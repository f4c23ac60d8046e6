"""Real outages of the portal's own database for tests: no mocks, the connection really fails."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from django.db import connection

from opsportal import db
from tests.servers import free_port


@contextlib.contextmanager
def unwritable(lock: str = "IMMEDIATE") -> Iterator[None]:
    """PostgreSQL behind a closed port (every connection of the process), or SQLite write-locked by
    another connection holding a `BEGIN <lock>` transaction with a write in it."""
    if connection.vendor == "postgresql":
        port = connection.settings_dict["PORT"]
        db.close_connections()
        connection.settings_dict["PORT"] = free_port()
        try:
            yield
        finally:
            db.close_connections()
            connection.settings_dict["PORT"] = port
    else:
        holder = sqlite3.connect(connection.settings_dict["NAME"], uri=True, check_same_thread=False)
        holder.execute(f"BEGIN {lock}")
        holder.execute(
            "INSERT INTO health_event (kind, created_at, subject, title, body, data) "
            "VALUES ('test', '2026-01-01', '', 'lock holder', '', '{}')"
        )
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
