"""A round as the portal runs it: probes, then auto-recovery of what they found down.

health.runner probes and records; recovery.engine repairs. This module is the one place that puts
them together (the scheduler, `runprobes` and the dashboard's "probe now" go through it), so the
domain below never calls up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from django.conf import settings

from health.models import Service, overall_status
from health.runner import STATE_FIELDS, RoundResult, run_round
from recovery.engine import auto_recover
from recovery.results import RecoveryResult


@dataclass
class Round(RoundResult):
    """A probe round and the recovery it started (empty when none ran)."""

    recovery: list[RecoveryResult] = field(default_factory=list)


def run(services: list[Service] | None = None, *, recover: bool = True, deadline: float | None = None) -> Round:
    """One round: probe and record, then (unless `recover` is false or AUTO_RECOVERY_ENABLED is off) repair.

    When a repair ran (it re-probed and recorded), the result reports the state it left, not the one before it.
    """
    probed = run_round(services, deadline=deadline)
    result = Round(**{f.name: getattr(probed, f.name) for f in dataclasses.fields(probed)})
    if not (recover and settings.AUTO_RECOVERY_ENABLED):
        return result
    result.recovery = auto_recover(result)
    if any(not r.skipped for r in result.recovery):
        fresh = Service.objects.in_bulk([s.pk for s in result.services])
        for s in result.services:
            if s.pk in fresh:
                for name in STATE_FIELDS:
                    setattr(s, name, getattr(fresh[s.pk], name))
        result.status = overall_status(result.services)
    return result
