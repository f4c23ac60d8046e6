"""Probe kinds: one module a kind; the registry key is the module name."""

from __future__ import annotations

from core.registry import Registry
from health.probes.base import DEGRADED, DOWN, UP, Probe, ProbeError, ProbeOutcome, ProbeTimeout

registry: Registry[type[Probe]] = Registry("health.probes", Probe)


def kind_choices() -> list[tuple[str, str]]:
    return registry.choices()


__all__ = ["DEGRADED", "DOWN", "UP", "Probe", "ProbeError", "ProbeOutcome", "ProbeTimeout", "registry"]
