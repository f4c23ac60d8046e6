from __future__ import annotations

import time
from typing import Any

from health.probes.base import UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome
from opsportal.procs import describe, find_processes
from opsportal.spec import ConfigError, Key

MATCH_KEYS = ("process_name", "cmdline_contains", "pid_file")


class ProcessProbe(Probe):
    """A local process, by name, command-line substring or pid file; zombies count as dead."""

    keys = {
        "process_name": Key("str"),
        "cmdline_contains": Key("str"),
        "pid_file": Key("str"),
        "min_count": Key("int", default=1, minimum=1),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        given = [k for k in MATCH_KEYS if k in cleaned]
        if len(given) != 1:
            raise ConfigError(where, "needs exactly one of process_name, cmdline_contains, pid_file")
        return cleaned

    def run(self) -> ProbeOutcome:
        criteria = {k: self.cfg[k] for k in MATCH_KEYS if self.cfg[k]}
        if len(criteria) != 1:
            raise ProbeConfigError("config error: needs exactly one of process_name, cmdline_contains, pid_file")
        start = time.perf_counter()
        procs = find_processes(**criteria)
        latency = (time.perf_counter() - start) * 1000
        (what,) = (f"{k.replace('_', ' ')} {v!r}" for k, v in criteria.items())
        if len(procs) < self.cfg["min_count"]:
            raise ProbeError(f"{len(procs)} running for {what} (need {self.cfg['min_count']})")
        oldest = min(procs, key=lambda p: p.create_time())
        return ProbeOutcome(UP, latency, f"{len(procs)} running: {describe(oldest)}")
