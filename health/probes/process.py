from __future__ import annotations

import os
import time
from typing import Any

from core.procs import describe, find_processes, split_pattern
from core.spec import ConfigError, Key
from health.probes.base import UP, Probe, ProbeConfigError, ProbeError, ProbeOutcome

MATCH_KEYS = ("process_name", "cmdline_contains", "pid_file")
# Narrow any match further; a process whose exe or cwd cannot be read (another user's) does not match them.
FILTER_KEYS = ("exe", "user", "cwd")


def check_match(settings: dict[str, Any], where: str) -> None:
    """The match rules a process service's settings must follow (shared with restart_process)."""
    given = [k for k in MATCH_KEYS if settings.get(k)]
    if len(given) != 1:
        raise ConfigError(where, "needs exactly one of process_name, cmdline_contains, pid_file")
    if settings.get("cmdline_contains"):
        try:
            split_pattern(settings["cmdline_contains"])
        except ValueError as exc:
            raise ConfigError(f"{where}.cmdline_contains", str(exc)) from None
    for key in ("exe", "cwd"):
        if settings.get(key) and not os.path.isabs(settings[key]):
            raise ConfigError(f"{where}.{key}", "must be an absolute path")


def match_criteria(settings: dict[str, Any]) -> dict[str, str]:
    """The keyword arguments for find_processes: the one match key and the filters given."""
    return {k: settings[k] for k in (*MATCH_KEYS, *FILTER_KEYS) if settings.get(k)}


def describe_match(criteria: dict[str, str]) -> str:
    """`cmdline contains 'worker', cwd '/srv'`: what a detail says was looked for."""
    return ", ".join(f"{k.replace('_', ' ')} {v!r}" for k, v in criteria.items())


class ProcessProbe(Probe):
    """A local process, by name, argv elements or pid file, narrowed by exe, user, cwd; zombies count as dead.

    Never finds the portal's own processes (core.procs.portal_pids).
    """

    keys = {
        "process_name": Key("str"),
        "cmdline_contains": Key("str", help="argv elements, split like a shell: consecutive whole elements"),
        "pid_file": Key("str"),
        "exe": Key("str", help="the executable's absolute path (compared resolved)"),
        "user": Key("str", help="a user name or uid"),
        "cwd": Key("str", help="the working directory's absolute path"),
        "min_count": Key("int", default=1, minimum=1),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_match(cleaned, where)
        return cleaned

    def run(self) -> ProbeOutcome:
        try:
            check_match(self.cfg, "settings")
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        criteria = match_criteria(self.cfg)
        start = time.perf_counter()
        procs = find_processes(**criteria)
        latency = (time.perf_counter() - start) * 1000
        if len(procs) < self.cfg["min_count"]:
            raise ProbeError(f"{len(procs)} running for {describe_match(criteria)} (need {self.cfg['min_count']})")
        oldest = min(procs, key=lambda p: p.create_time())
        return ProbeOutcome(UP, latency, f"{len(procs)} running: {describe(oldest)}")
