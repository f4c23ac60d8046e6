"""Slots on a fixed grid: a service or tunnel due at `due` with period `interval` is due at due + k x interval.

One rule for everything the portal does on a cadence (probes, tunnel checks): the next slot counts from
the due time, not from when the work finished, so nothing drifts; slots already past are skipped, so a
late start never bursts.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta


def next_due(due: datetime, interval: float, now: datetime) -> datetime:
    """The slot after `due`; slots already past are skipped (no burst of catch-up work)."""
    step = timedelta(seconds=interval)
    following = due + step
    if following <= now:
        missed = int((now - due) / step)
        following = due + step * (missed + 1)
    return following


def slot_start(due: datetime, interval: float, now: datetime) -> datetime:
    """The start of the slot `now` is in, on the grid of `due`."""
    step = timedelta(seconds=interval)
    return due + step * math.floor((now - due) / step)
