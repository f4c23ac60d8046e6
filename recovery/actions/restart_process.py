from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psutil
from django.db import DatabaseError

from core.procs import (
    ProcRef,
    alive_after,
    check_env_settings,
    child_env_keys,
    expand_child_env,
    find_processes,
    start_detached,
    stop,
)
from core.spec import ConfigError, Key, scrub
from health.probes.process import check_match, describe_match, match_criteria
from recovery.actions.base import Action, ActionError, ActionResult

# How many of the service's recent attempts to look through for the process this action last started.
RECENT_ATTEMPTS = 5
# How much of a refused match's command line an attempt records.
CMDLINE_CHARS = 200


class RestartProcessAction(Action):
    """Stops the service's process, starts argv detached, checks it stays up.

    What is stopped, in order of preference: the process a pid file names (the service's `pid_file`); the
    process this action last started for the service, while it is alive (pid + create time); else what the
    service's process match finds, at most `max_matches` of them (more: nothing is stopped, the attempt fails
    and records what it would have stopped). The portal's own processes are never found nor stopped.
    """

    keys = {
        "argv": Key("argv", required=True),
        "log_file": Key("str"),
        "settle_seconds": Key("number", default=2, minimum=0),
        **child_env_keys("process"),
        "stop_grace": Key("number", default=5, minimum=0, help="seconds between SIGTERM and SIGKILL"),
        "max_matches": Key("int", default=1, minimum=1, help="most processes a match may stop (a pool: its size)"),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_env_settings(cleaned, where)
        return cleaned

    def criteria(self) -> dict[str, str]:
        settings = self.service.settings or {}
        if self.service.kind != "process":
            raise ActionError("config error: restart_process needs a service of kind process with one match key")
        try:
            check_match(settings, "settings")
        except ConfigError as exc:  # say which key is wrong and why (a relative exe, an open quote)
            raise ActionError(f"config error: restart_process cannot match the service's process: {exc}") from None
        return match_criteria(settings)

    def last_started(self) -> ProcRef | None:
        """The process this action last started for the service, when it is still alive."""
        if self.service.pk is None:
            return None
        try:
            recent = self.service.recovery_attempts.filter(
                action_kind=self.kind, action_data__has_key="started"
            ).order_by("-started_at")[:RECENT_ATTEMPTS]
            for attempt in recent:
                started = attempt.action_data.get("started") or {}
                ref = ProcRef(int(started["pid"]), float(started["createTime"]))
                if ref.alive():
                    return ref
        except (DatabaseError, KeyError, TypeError, ValueError):
            return None  # no usable record: the match decides
        return None

    def targets(self, criteria: dict[str, str]) -> list[psutil.Process]:
        # A pid file names the process exactly (find_processes refuses a stale one's reused pid).
        if criteria.get("pid_file"):
            return find_processes(**criteria)
        ref = self.last_started()
        if ref is not None and (proc := ref.process()) is not None:
            return [proc]
        return find_processes(**criteria)

    def captures_evidence(self) -> bool:
        return True

    def evidence_targets(self) -> list[psutil.Process]:
        return self.targets(self.criteria())

    def evidence_logs(self) -> list[str]:
        return [self.cfg["log_file"]] if self.cfg["log_file"] else []

    def refuse(self, criteria: dict[str, str], found: list[psutil.Process]) -> ActionResult:
        would = [_record(p, self.secrets) for p in found]
        shown = ", ".join(f"pid {w['pid']} ({w['name']})" for w in would)
        detail = (
            f"refused: {len(found)} processes match {describe_match(criteria)} (max_matches {self.cfg['max_matches']});"
            f" would have stopped {shown}; nothing stopped or started"
        )
        return ActionResult(False, scrub(detail, self.secrets), secrets=self.secrets, data={"wouldStop": would})

    def run(self) -> ActionResult:
        criteria = self.criteria()
        try:
            env = expand_child_env(self.cfg, self.secrets)
        except ConfigError as exc:
            raise ActionError(f"config error: {exc}") from None
        # Stopping and settling are bounded by the action's timeout, whatever stop_grace and settle_seconds say.
        deadline = time.monotonic() + self.timeout
        found = self.targets(criteria)
        if len(found) > self.cfg["max_matches"]:
            return self.refuse(criteria, found)
        old = [ProcRef.of(p) for p in found]
        # stop() waits up to grace after SIGTERM and again after SIGKILL: half the budget each at most.
        grace = min(self.cfg["stop_grace"], _left(deadline) / 2)
        # psutil re-checks each process's create time before it signals, so a reused pid is never hit.
        stop([p for r in old if (p := r.process())], grace=grace)
        survivors = [r.pid for r in old if r.alive()]
        if survivors:
            raise ActionError(f"could not stop pid {', '.join(map(str, survivors))}")
        log_file = self.cfg["log_file"]
        try:
            new = start_detached(self.cfg["argv"], log_file=log_file, env=env, passthrough=self.cfg["env_passthrough"])
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


def _record(proc: psutil.Process, secrets: list[str]) -> dict[str, Any]:
    """What a refused attempt keeps of a process it would have stopped (its command line cut and scrubbed)."""
    try:
        name, user, cmdline = proc.name(), proc.username(), " ".join(proc.cmdline())
        created = proc.create_time()
    except psutil.Error:
        return {"pid": proc.pid, "name": "?", "user": "", "cmdline": "", "createTime": None}
    return {
        "pid": proc.pid,
        "createTime": created,
        "name": name,
        "user": user,
        "cmdline": scrub(cmdline, secrets)[:CMDLINE_CHARS],
    }


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
