from __future__ import annotations

from opsportal.procs import run_argv
from opsportal.spec import ConfigError, Key, expand_env, scrub
from recovery.actions.base import Action, ActionError, ActionResult, tail


class CommandAction(Action):
    """Runs an argv (never a shell) with a timeout; exit 0 is success. Keeps the last lines of output."""

    keys = {
        "argv": Key("argv", required=True),
        "env": Key("dict[str]", default={}, help="values may use ${ENV_VAR}"),
    }

    def environment(self) -> dict[str, str]:
        """The variables set over the portal's own (secrets stripped by run_argv)."""
        try:
            extra = {k: expand_env(v, self.secrets) for k, v in self.cfg["env"].items()}
        except ConfigError as exc:
            raise ActionError(f"config error: {exc}") from None
        return {"OPSPORTAL_SERVICE": self.service.name, **extra}

    def run(self) -> ActionResult:
        argv = self.cfg["argv"]
        env = self.environment()
        try:
            # stderr folded into stdout and the tail kept: the last lines say why a repair failed.
            done = run_argv(argv, self.timeout, env=env, merge_stderr=True, keep="tail")
        except OSError as exc:
            raise ActionError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        text = scrub(tail(done.stdout.decode("utf-8", errors="replace")), self.secrets)
        if done.timed_out:
            raise ActionError(f"command did not finish within {self.timeout:g} s; output: {text}")
        code = done.returncode
        detail = f"exit {code}" + (f"; output: {text}" if text else "")
        return ActionResult(code == 0, detail, exit_code=code, secrets=self.secrets)
