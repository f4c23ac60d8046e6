"""Real outages of the portal's own database for tests: no mocks, the connection really fails."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connection

from core import db
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


class Outage:
    """A real outage that can start in any thread (a server's handler, mid-check) and ends in the test.

    On PostgreSQL the connections already open (the checking thread's) are terminated first, as a
    server going away does; then every new one meets a closed port.
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.started = threading.Event()

    def start(self) -> None:
        if self.started.is_set():
            return
        if connection.vendor == "postgresql":
            import psycopg

            s = connection.settings_dict
            with psycopg.connect(
                host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"] or None, dbname=s["NAME"]
            ) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        self._stack.enter_context(unwritable())
        self.started.set()

    def end(self) -> None:
        self._stack.close()
        db.reset_breaker()


@contextlib.contextmanager
def quick_db_hardening(settings: Any, var_dir: Path) -> Iterator[None]:
    """A private var dir (spool, host claims), short retry backoff and breaker reset, the breaker closed."""
    settings.VAR_DIR = var_dir
    settings.DB_RETRY_BACKOFF_MS = 10
    settings.DB_BREAKER_RESET_S = 1
    db.configure_breaker()
    db.breaker.close()
    try:
        yield
    finally:
        db.breaker.close()
