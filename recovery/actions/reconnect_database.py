from __future__ import annotations

from django.db import DatabaseError, connections

from core import db
from recovery.actions.base import Action, ActionError, ActionResult


class ReconnectDatabaseAction(Action):
    """The portal's own database: close connections, reset the breaker, verify with SELECT 1."""

    keys = {}

    def run(self) -> ActionResult:
        closed = 0
        for conn in connections.all(initialized_only=True):
            # A connection inside a transaction belongs to its caller; closing it would lose their work.
            if not conn.in_atomic_block:
                conn.close()
                closed += 1
        db.reset_breaker()
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError as exc:
            raise ActionError(f"SELECT 1 failed after reconnecting: {type(exc).__name__}") from None
        return ActionResult(True, f"closed {closed} connection(s), breaker reset, SELECT 1 ok")
