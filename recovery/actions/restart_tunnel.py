from __future__ import annotations

import psutil

from core import procs
from core.spec import Key
from recovery.actions.base import Action, ActionResult
from tunnels.check import Check
from tunnels.models import Tunnel
from tunnels.watchdog import restart_for_recovery


class RestartTunnelAction(Action):
    """Hands over to the tunnel watchdog's restart: same claim, same hourly limit, same events."""

    keys = {"tunnel": Key("slug", required=True)}

    def run(self) -> ActionResult:
        ok, detail = restart_for_recovery(self.cfg["tunnel"])
        return ActionResult(ok=ok, detail=detail)

    def captures_evidence(self) -> bool:
        return True

    def tunnel(self) -> Tunnel | None:
        return Tunnel.objects.filter(name=self.cfg["tunnel"]).first()

    def evidence_targets(self) -> list[psutil.Process]:
        """The connector the watchdog would stop: the recorded one, else what process_match finds."""
        t = self.tunnel()
        if t is None:
            return []
        if t.pid and t.pid_create_time is not None:
            known = procs.ProcRef(t.pid, t.pid_create_time).process()
            if known is not None:
                return [known]
        return procs.find_processes(cmdline_contains=t.process_match) if t.process_match else []

    def evidence_logs(self) -> list[str]:
        t = self.tunnel()
        if t is None:
            return []
        return [Check(t).log_file()]
