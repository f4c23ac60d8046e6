from __future__ import annotations

import os
import time
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
        # Stopping and settling are bounded by the action's timeout, whatever stop_grace and settle_seconds say.
        deadline = time.monotonic() + self.timeout
        old = [ProcRef.of(p) for p in self.targets(criteria)]
        # stop() waits up to grace after SIGTERM and again after SIGKILL: half the budget each at most.
        grace = min(self.cfg["stop_grace"], _left(deadline) / 2)
        # psutil re-checks each process's create time before it signals, so a reused pid is never hit.
        stop([p for r in old if (p := r.process())], grace=grace)
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
        wanted = self.cfg["settle_seconds"]
        settle = min(wanted, _left(deadline))
        cut = settle < wanted
        shown = f"{round(settle, 1):g}" if cut else f"{wanted:g}"
        if not alive_after(new, settle):
            detail = f"stopped {stopped}; started pid {new.pid}, but it exited within {shown} s"
            if log_file:
                detail += f" (see {os.fspath(log_file)})"
            return ActionResult(False, scrub(detail, self.secrets), secrets=self.secrets, data=data)
        detail = f"stopped {stopped}; started pid {new.pid}"
        if cut:
            # Still a success: the engine re-probes the service to verify the repair anyway.
            detail += f" (up after {shown} s; the {self.timeout:g} s action timeout cut the {wanted:g} s settle short)"
        return ActionResult(True, scrub(detail, self.secrets), secrets=self.secrets, data=data)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
