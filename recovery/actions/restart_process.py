from __future__ import annotations

import os
from pathlib import Path

import psutil

from opsportal.procs import ProcRef, alive_after, find_processes, start_detached, stop
from opsportal.spec import ConfigError, Key, expand_env, scrub
from recovery.actions.base import Action, ActionError, ActionResult

MATCH_KEYS = ("process_name", "cmdline_contains", "pid_file")


class RestartProcessAction(Action):
    """Stops what the service's process match finds, starts argv detached, checks it stays up."""

    keys = {
        "argv": Key("argv", required=True),
        "log_file": Key("str"),
        "settle_seconds": Key("number", default=2, minimum=0),
        "env": Key("dict[str]", default={}, help="values may use ${ENV_VAR}"),
        "stop_grace": Key("number", default=5, minimum=0, help="seconds between SIGTERM and SIGKILL"),
    }

    def criteria(self) -> dict[str, str]:
        found = {k: v for k, v in (self.service.settings or {}).items() if k in MATCH_KEYS and v}
        if self.service.kind != "process" or len(found) != 1:
            raise ActionError("config error: restart_process needs a service of kind process with one match key")
        return found

    def targets(self, criteria: dict[str, str]) -> list[psutil.Process]:
        # find_processes already refuses a stale pid file's reused pid, for every caller.
        return find_processes(**criteria)

    def run(self) -> ActionResult:
        criteria = self.criteria()
        try:
            env = {k: expand_env(v, self.secrets) for k, v in self.cfg["env"].items()}
        except ConfigError as exc:
            raise ActionError(f"config error: {exc}") from None
        old = [ProcRef.of(p) for p in self.targets(criteria)]
        # psutil re-checks each process's create time before it signals, so a reused pid is never hit.
        stop([r.process() for r in old if r.alive()], grace=self.cfg["stop_grace"])
        survivors = [r.pid for r in old if r.alive()]
        if survivors:
            raise ActionError(f"could not stop pid {', '.join(map(str, survivors))}")
        log_file = self.cfg["log_file"]
        try:
            new = start_detached(self.cfg["argv"], log_file=log_file, env=env)
        except OSError as exc:
            raise ActionError(f"cannot start {self.cfg['argv'][0]}: {exc.strerror or exc}") from None
        if criteria.get("pid_file"):
            Path(criteria["pid_file"]).write_text(f"{new.pid}\n")
        data = {
            "stopped": [{"pid": r.pid, "createTime": r.create_time} for r in old],
            "started": {"pid": new.pid, "createTime": new.create_time},
        }
        stopped = ", ".join(str(r.pid) for r in old) or "none running"
        if not alive_after(new, self.cfg["settle_seconds"]):
            detail = f"stopped {stopped}; started pid {new.pid}, but it exited within {self.cfg['settle_seconds']:g} s"
            if log_file:
                detail += f" (see {os.fspath(log_file)})"
            return ActionResult(False, scrub(detail, self.secrets), secrets=self.secrets, data=data)
        detail = f"stopped {stopped}; started pid {new.pid}"
        return ActionResult(True, scrub(detail, self.secrets), secrets=self.secrets, data=data)
