from __future__ import annotations

from typing import Any

import psutil

from core.procs import check_env_settings, child_env_keys, expand_child_env, find_processes, run_argv
from core.spec import ConfigError, Key, scrub
from health.probes.process import check_match, match_criteria
from recovery.actions.base import Action, ActionError, ActionResult, tail


class CommandAction(Action):
    """Runs an argv (never a shell) with a timeout; exit 0 is success. Keeps the last lines of output.

    The command gets a minimal environment (core.procs.child_env): PATH, HOME, LANG, LC_*, TZ, the
    variables `env_passthrough` names, OPSPORTAL_SERVICE and `env`.
    """

    keys = {
        "argv": Key("argv", required=True),
        **child_env_keys("command"),
        "capture_evidence": Key(
            "bool", default=False, help="keep evidence (the service's process, log tails) before it runs"
        ),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_env_settings(cleaned, where)
        return cleaned

    def environment(self) -> dict[str, str]:
        """The variables set over the minimal environment run_argv gives a child."""
        try:
            extra = expand_child_env(self.cfg, self.secrets)
        except ConfigError as exc:
            raise ActionError(f"config error: {exc}") from None
        return {"OPSPORTAL_SERVICE": self.service.name, **extra}

    def captures_evidence(self) -> bool:
        return bool(self.cfg["capture_evidence"])

    def evidence_targets(self) -> list[psutil.Process]:
        """What the command most likely restarts: a `process` service's own process."""
        if self.service.kind != "process":
            return []
        settings = self.service.settings or {}
        check_match(settings, "settings")  # never find_processes() without a criterion: that is every process
        return find_processes(**match_criteria(settings))

    def run(self) -> ActionResult:
        argv = self.cfg["argv"]
        env = self.environment()
        try:
            # stderr folded into stdout and the tail kept: the last lines say why a repair failed.
            done = run_argv(
                argv, self.timeout, env=env, passthrough=self.cfg["env_passthrough"], merge_stderr=True, keep="tail"
            )
        except OSError as exc:
            raise ActionError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        # Scrubbed whole, then cut: a secret across the cut would otherwise leave its tail behind.
        text = tail(scrub(done.stdout.decode("utf-8", errors="replace"), self.secrets))
        if done.timed_out:
            raise ActionError(f"command did not finish within {self.timeout:g} s; output: {text}")
        code = done.returncode
        detail = f"exit {code}" + (f"; output: {text}" if text else "")
        return ActionResult(code == 0, detail, exit_code=code, secrets=self.secrets)
