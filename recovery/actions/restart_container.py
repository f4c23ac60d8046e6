"""The `restart_container` action: POST /containers/{id}/restart?t=N on the Docker Engine API's unix socket.

Verified like every action: by re-probing the service afterwards (a `docker` probe sees the container run).
"""

from __future__ import annotations

import time
from typing import Any

from core.spec import ConfigError, Key, scrub
from health.probes.docker import CONTROL, DEFAULT_SOCKET, Engine, EngineError, check_container
from recovery.actions.base import Action, ActionError, ActionResult


class RestartContainerAction(Action):
    """Restarts a container: Docker stops it (SIGTERM, SIGKILL after `stop_timeout` s) and starts it again."""

    keys = {
        "container": Key("str", required=True, help="a container name or id"),
        "socket": Key("str", default=DEFAULT_SOCKET, help="the Docker Engine API's unix socket"),
        "stop_timeout": Key("int", default=10, minimum=0, maximum=3600, help="seconds before Docker kills it"),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_container(cleaned, where)
        return cleaned

    def run(self) -> ActionResult:
        cfg = self.cfg
        try:
            check_container(cfg, "settings")
        except ConfigError as exc:
            raise ActionError(f"config error: {exc}") from None
        name, stop = cfg["container"], cfg["stop_timeout"]
        if stop >= self.timeout:
            raise ActionError(
                f"config error: settings.stop_timeout ({stop} s) must be less than the action's timeout "
                f"({self.timeout:g} s): Docker may take that long to stop the container"
            )
        try:
            status, message = Engine(cfg["socket"], self.timeout).restart(name, stop)
        except EngineError as exc:
            raise ActionError(str(exc)) from None
        if status == 404:
            raise ActionError(f"container {name} does not exist (Docker answered 404)")
        message = scrub(message, self.secrets)
        ok = status == 204
        detail = f"restarted container {name} (stop timeout {stop} s)" if ok else f"restart of {name}: HTTP {status}"
        if message:
            detail += f": {message}"
        return ActionResult(ok, detail, exit_code=status, secrets=self.secrets)

    def captures_evidence(self) -> bool:
        return True

    def evidence_extra(self, budget: float, lines: int) -> dict[str, Any]:
        """The container's state (Docker's inspect document, the parts that say why) and its last log lines."""
        cfg = self.cfg
        name = cfg["container"]
        check_container(cfg, "settings")
        deadline = time.monotonic() + budget
        engine = Engine(cfg["socket"], max(0.01, budget))
        document = engine.inspect(name)
        if document is None:
            return {"container": {"name": name, "error": "does not exist (Docker answered 404)"}}
        state = document.get("State") if isinstance(document.get("State"), dict) else {}
        health = state.get("Health") if isinstance(state.get("Health"), dict) else {}
        container = {
            "name": name,
            "id": str(document.get("Id") or "")[:12],
            "image": str((document.get("Config") or {}).get("Image") or ""),
            "status": state.get("Status"),
            "running": state.get("Running"),
            "exit_code": state.get("ExitCode"),
            "pid": state.get("Pid"),
            "started_at": state.get("StartedAt"),
            "finished_at": state.get("FinishedAt"),
            "oom_killed": state.get("OOMKilled"),
            "health": health.get("Status"),
            "error": CONTROL.sub(" ", str(state.get("Error") or ""))[:500],
        }
        left = deadline - time.monotonic()
        if left <= 0:
            return {"container": container}
        tty = bool((document.get("Config") or {}).get("Tty"))
        log: dict[str, Any] = {"path": f"docker:{name}", "lines": [], "truncated": False}
        try:
            text = Engine(cfg["socket"], left).logs(name, lines, tty)
        except EngineError as exc:
            return {"container": container, "logs": [{**log, "error": str(exc)[:200]}]}
        log["lines"] = [CONTROL.sub(" ", line) for line in text.splitlines()[-lines:]]
        log["truncated"] = len(log["lines"]) >= lines  # Docker was asked for that many: older ones may exist
        return {"container": container, "logs": [log]}
