"""The 90-day daily uptime bar of a status page: health.rollups.tallies, split by UTC day.

The same counting as `Tally` (results taken in maintenance and misconfigured ones are left out; degraded
answered, so it is up): hourly rollups where they exist, raw rows after `rolled_until()`. Three queries for
all the page's services, whatever their number. A day without any result is "no data", never up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from health.probes.base import DEGRADED, UP
from health.rollups import Tally, tallies_by_day

UTC = dt.UTC
DAYS = 90
# A day with failures that still answered this share of its probes is shown degraded, below it down.
DEGRADED_FROM = 95.0


@dataclass(frozen=True)
class Day:
    """One day of the bar: its date, its state (up, degraded, down, maintenance or none) and its tally."""

    date: dt.date
    state: str
    uptime: float | None
    maintenance: int

    @property
    def label(self) -> str:
        if self.state == "none":
            return f"{self.date:%Y-%m-%d}: no data"
        if self.state == "maintenance":
            return f"{self.date:%Y-%m-%d}: maintenance"
        return f"{self.date:%Y-%m-%d}: {self.uptime:.2f} % up".replace(".00 %", " %")


def first_day(now: dt.datetime, days: int = DAYS) -> dt.datetime:
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=days - 1)


def daily_tallies(service_ids: Iterable[int], now: dt.datetime, days: int = DAYS) -> dict[int, dict[dt.date, Tally]]:
    """A Tally per service and UTC day over the last `days` days (today included, up to `now`)."""
    return tallies_by_day(service_ids, first_day(now, days), now + dt.timedelta(microseconds=1))


def day_state(tally: Tally | None) -> str:
    """none: no result; maintenance: mostly in maintenance and nothing counted failed; else by the day's uptime."""
    if tally is None or (tally.counted == 0 and tally.maintenance == 0):
        return "none"
    failed = tally.counted - tally.ok
    if tally.maintenance and tally.maintenance * 2 >= tally.maintenance + tally.counted and not failed:
        return "maintenance"
    if tally.counted == 0:
        return "none"  # only misconfigured results: nothing known about the service
    if not failed:
        return UP
    return DEGRADED if (tally.uptime or 0) >= DEGRADED_FROM else "down"


def bar(tallies: dict[dt.date, Tally], now: dt.datetime, days: int = DAYS) -> list[Day]:
    """The days oldest first, each with its state (see day_state)."""
    first = first_day(now, days).date()
    out = []
    for i in range(days):
        date = first + dt.timedelta(days=i)
        tally = tallies.get(date)
        out.append(Day(date, day_state(tally), tally.uptime if tally else None, tally.maintenance if tally else 0))
    return out


def total(tallies: dict[dt.date, Tally]) -> float | None:
    """Uptime % over all the days (None when nothing counted)."""
    return sum(tallies.values(), Tally()).uptime
