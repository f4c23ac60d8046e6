from __future__ import annotations

from core.spec import Key
from recovery.actions.base import Action, ActionResult
from tunnels.watchdog import restart_for_recovery


class RestartTunnelAction(Action):
    """Hands over to the tunnel watchdog's restart: same claim, same hourly limit, same events."""

    keys = {"tunnel": Key("slug", required=True)}

    def run(self) -> ActionResult:
        ok, detail = restart_for_recovery(self.cfg["tunnel"])
        return ActionResult(ok=ok, detail=detail)
