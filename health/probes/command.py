from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from health.probes.base import DEGRADED, DOWN, UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome, ProbeTimeout
from opsportal.procs import child_env
from opsportal.spec import ConfigError, Key, expand_env

# The Nagios plugin convention, so existing check plugins work unchanged.
EXIT_STATUS = {0: UP, 1: DEGRADED}
# After a timeout kill, how long to wait for the output pipes to close.
PIPE_GRACE_SECONDS = 1.0


class CommandProbe(Probe):
    """Runs an argv (never a shell): exit 0 up, 1 degraded, anything else down."""

    keys = {
        "argv": Key("argv", required=True),
        "env": Key("dict[str]", default={}, help="values may use ${ENV_VAR}"),
    }

    def run(self) -> ProbeOutcome:
        try:
            extra = {k: expand_env(v, self.secrets) for k, v in self.cfg["env"].items()}
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        start = time.perf_counter()
        try:
            child = subprocess.Popen(
                self.cfg["argv"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env(extra),
                start_new_session=True,  # so a timeout can kill the whole group
            )
        except OSError as exc:
            raise ProbeError(f"cannot run {self.cfg['argv'][0]}: {exc.strerror or exc}") from None
        try:
            out, err = child.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            try:
                child.communicate(timeout=PIPE_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                # A descendant that left the group still holds the pipes: stop waiting for them.
                for pipe in (child.stdout, child.stderr):
                    if pipe:
                        pipe.close()
                child.wait()
            raise ProbeTimeout(f"command did not finish within {self.timeout:g} s") from None
        latency = (time.perf_counter() - start) * 1000
        text = (out or err).decode("utf-8", errors="replace").strip()
        first = text.splitlines()[0][:300] if text else f"exit {child.returncode}"
        status = EXIT_STATUS.get(child.returncode, DOWN)
        if status == DOWN:
            raise ProbeError(f"exit {child.returncode}: {first}")
        return ProbeOutcome(status, latency, first)
