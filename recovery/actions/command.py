from __future__ import annotations

from opsportal.spec import Key
from recovery.actions.base import Action, ActionResult


class CommandAction(Action):
    """Runs an argv (never a shell) with a timeout."""

    keys = {"argv": Key("argv", required=True), "env": Key("dict[str]", default={})}

    def run(self) -> ActionResult:
        raise NotImplementedError("the recovery engine issue implements this")
