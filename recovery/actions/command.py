from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from opsportal.procs import child_env
from opsportal.spec import ConfigError, Key, expand_env, scrub
from recovery.actions.base import Action, ActionError, ActionResult, tail


class CommandAction(Action):
    """Runs an argv (never a shell) with a timeout; exit 0 is success. Keeps the last lines of output."""

    keys = {
        "argv": Key("argv", required=True),
        "env": Key("dict[str]", default={}, help="values may use ${ENV_VAR}"),
    }

    def environment(self) -> dict[str, str]:
        try:
            extra = {k: expand_env(v, self.secrets) for k, v in self.cfg["env"].items()}
        except ConfigError as exc:
            raise ActionError(f"config error: {exc}") from None
        return child_env({"OPSPORTAL_SERVICE": self.service.name, **extra})

    def run(self) -> ActionResult:
        argv = self.cfg["argv"]
        env = self.environment()
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # so a timeout kills the whole group
            )
        except OSError as exc:
            raise ActionError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            out, _ = child.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            out, _ = child.communicate()
            text = scrub(tail(out.decode("utf-8", errors="replace")), self.secrets)
            raise ActionError(f"command did not finish within {self.timeout:g} s; output: {text}") from None
        text = scrub(tail(out.decode("utf-8", errors="replace")), self.secrets)
        code = child.returncode
        detail = f"exit {code}" + (f"; output: {text}" if text else "")
        return ActionResult(code == 0, detail, exit_code=code, secrets=self.secrets)
