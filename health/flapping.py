"""Flap detection in the Nagios manner.

Each service keeps its last 21 states (`Service.flap_history`, one letter each). The percentage of
state change weighs the 20 possible changes from 0.75 (oldest) to 1.25 (newest), so recent
changes count more; flapping starts above FLAP_HIGH_THRESHOLD (20 %) and stops below
FLAP_LOW_THRESHOLD (5 %) — the gap is hysteresis, so a service does not flap about flapping.
While a service flaps its notifications are held (notify.outbox) and one notice goes out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from health.probes.base import DEGRADED, DOWN, MISCONFIGURED, UP

if TYPE_CHECKING:
    from health.models import Service

HISTORY = 21
LOW_WEIGHT, HIGH_WEIGHT = 0.75, 1.25
_LETTER = {UP: "u", DEGRADED: "g", DOWN: "d", MISCONFIGURED: "m"}
STARTED, STOPPED = "started", "stopped"


def percent_state_change(history: str) -> float:
    """Nagios' weighted percent state change of a history (oldest first, at most 21 states).

    A shorter history is aligned to the newest end, and the divisor stays 20, as Nagios does.
    """
    history = history[-HISTORY:]
    offset = HISTORY - len(history)
    weighted = 0.0
    for i in range(1, len(history)):
        if history[i] != history[i - 1]:
            x = i + offset  # 1 … 20, the newest change is 20
            weighted += (x - 1) * (HIGH_WEIGHT - LOW_WEIGHT) / (HISTORY - 2) + LOW_WEIGHT
    return weighted * 100.0 / (HISTORY - 1)


def note(service: Service, status: str) -> str | None:
    """Add one probe status to the service's history (in memory); returns "started", "stopped" or None."""
    service.flap_history = (service.flap_history + _LETTER.get(status, "d"))[-HISTORY:]
    service.flap_percent = round(percent_state_change(service.flap_history), 2)
    if not settings.FLAP_DETECTION:
        was, service.flapping = service.flapping, False
        return STOPPED if was else None
    if not service.flapping and service.flap_percent > settings.FLAP_HIGH_THRESHOLD:
        service.flapping = True
        return STARTED
    if service.flapping and service.flap_percent < settings.FLAP_LOW_THRESHOLD:
        service.flapping = False
        return STOPPED
    return None
