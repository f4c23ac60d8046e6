from __future__ import annotations

from opsportal.spec import Key
from recovery.actions.base import Action, ActionResult


class RestartTunnelAction(Action):
    """Hands over to the tunnel watchdog's restart."""

    keys = {"tunnel": Key("slug", required=True)}

    def run(self) -> ActionResult:
        raise NotImplementedError("the tunnel watchdog issue implements this")
