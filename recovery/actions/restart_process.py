from __future__ import annotations

from opsportal.spec import Key
from recovery.actions.base import Action, ActionResult


class RestartProcessAction(Action):
    """Stops what the service's process match finds, starts argv detached, checks it stays up."""

    keys = {
        "argv": Key("argv", required=True),
        "log_file": Key("str"),
        "settle_seconds": Key("number", default=2, minimum=0),
        "env": Key("dict[str]", default={}),
    }

    def run(self) -> ActionResult:
        raise NotImplementedError("the recovery engine issue implements this")
