from __future__ import annotations

import time

import psutil

from core.spec import Key
from health.probes.base import DEGRADED, UP, Probe, ProbeError, ProbeOutcome


def _pct(minimum: float = 1, maximum: float = 100, default: float | None = None) -> Key:
    return Key("number", minimum=minimum, maximum=maximum, default=default)


class SystemProbe(Probe):
    """This host's CPU, memory and disk use: above a `*_warn` is degraded, above a `*_max` down."""

    keys = {
        "cpu_warn": _pct(default=90),
        "cpu_max": _pct(),
        "memory_warn": _pct(default=90),
        "memory_max": _pct(default=98),
        "disk_warn": _pct(default=90),
        "disk_max": _pct(default=95),
        "disk_path": Key("str", default="/"),
    }

    def run(self) -> ProbeOutcome:
        start = time.perf_counter()
        try:
            usage = {
                "cpu": psutil.cpu_percent(interval=min(0.2, self.timeout / 2)),
                "memory": psutil.virtual_memory().percent,
                "disk": psutil.disk_usage(self.cfg["disk_path"]).percent,
            }
        except OSError as exc:
            raise ProbeError(f"cannot read usage of {self.cfg['disk_path']}: {exc.strerror or exc}") from None
        latency = (time.perf_counter() - start) * 1000
        summary = ", ".join(f"{k} {v:.0f}%" for k, v in usage.items())
        over = [k for k, v in usage.items() if self.cfg[f"{k}_max"] is not None and v > self.cfg[f"{k}_max"]]
        if over:
            raise ProbeError(f"{', '.join(over)} above limit: {summary}")
        warn = [k for k, v in usage.items() if self.cfg[f"{k}_warn"] is not None and v > self.cfg[f"{k}_warn"]]
        if warn:
            return ProbeOutcome(DEGRADED, latency, f"{', '.join(warn)} above warning: {summary}")
        return ProbeOutcome(UP, latency, summary)
