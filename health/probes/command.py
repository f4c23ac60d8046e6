from __future__ import annotations

from typing import Any

from core.procs import check_env_settings, child_env_keys, expand_child_env, run_argv
from core.spec import ConfigError, Key, scrub
from health.probes.base import DEGRADED, DOWN, UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout

# The Nagios plugin convention, so existing check plugins work unchanged.
EXIT_STATUS = {0: UP, 1: DEGRADED}


class CommandProbe(Probe):
    """Runs an argv (never a shell): exit 0 up, 1 degraded, anything else down.

    The plugin gets a minimal environment (core.procs.child_env): PATH, HOME, LANG, LC_*, TZ, the
    variables `env_passthrough` names and `env`; never the portal's environment wholesale.
    """

    keys = {
        "argv": Key("argv", required=True),
        **child_env_keys("plugin"),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_env_settings(cleaned, where)
        return cleaned

    def run(self) -> ProbeOutcome:
        try:
            extra = expand_child_env(self.cfg, self.secrets)
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        try:
            # The first line is what a check plugin reports, so the head of the output is kept.
            done = run_argv(
                self.cfg["argv"], self.timeout, env=extra, passthrough=self.cfg["env_passthrough"], keep="head"
            )
        except OSError as exc:
            raise ProbeError(f"cannot run {self.cfg['argv'][0]}: {exc.strerror or exc}") from None
        if done.timed_out:
            raise ProbeTimeout(f"command did not finish within {self.timeout:g} s")
        # Scrubbed whole, then cut: a secret across the cut would leave its head behind, unmatched.
        text = scrub((done.stdout or done.stderr).decode("utf-8", errors="replace"), self.secrets).strip()
        first = text.splitlines()[0][:300] if text else f"exit {done.returncode}"
        status = EXIT_STATUS.get(done.returncode, DOWN)
        if status == DOWN:
            raise ProbeError(f"exit {done.returncode}: {first}")
        return ProbeOutcome(status, done.duration * 1000, first)
