from __future__ import annotations

from recovery.actions.base import Action, ActionResult


class ReconnectDatabaseAction(Action):
    """The portal's own database: close connections, reset the breaker, verify with SELECT 1."""

    keys = {}

    def run(self) -> ActionResult:
        raise NotImplementedError("the recovery engine issue implements this")
