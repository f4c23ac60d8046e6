"""The `restart_container` action: POST /containers/{id}/restart?t=N on the Docker Engine API's unix socket.

Verified like every action: by re-probing the service afterwards (a `docker` probe sees the container run).
"""

from __future__ import annotations

from typing import Any

from core.spec import ConfigError, Key, scrub
from health.probes.docker import DEFAULT_SOCKET, Engine, EngineError, check_container
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
