"""When a maintenance window is open: one-off, cron, or weekdays at a time, in its time zone (DST included).

Pure: reads a window's fields, writes nothing (health.maintenance applies the open ones to services).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.spec import ConfigError

if TYPE_CHECKING:
    from health.models import MaintenanceWindow

UTC = dt.UTC
MAX_DURATION_MINUTES = 7 * 24 * 60
# (name, lowest, highest) of the five cron fields
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 7))


def parse_cron(expr: str) -> tuple[set[int], ...]:
    """The five fields of a cron expression as sets; `*`, lists, ranges and `/step` are understood.
    Weekday 0 and 7 are Sunday. Raises ConfigError naming `cron`."""
    parts = expr.split()
    if len(parts) != 5:
        raise ConfigError("cron", "must have five fields: minute hour day month weekday")
    fields: list[set[int]] = []
    for text, (name, low, high) in zip(parts, _CRON_FIELDS, strict=True):
        values: set[int] = set()
        for item in text.split(","):
            base, _, step_text = item.partition("/")
            try:
                step = int(step_text) if step_text else 1
                if base == "*":
                    start, end = low, high
                elif "-" in base:
                    start, end = (int(x) for x in base.split("-", 1))
                else:
                    start = end = int(base)
                    if step_text:
                        end = high
            except ValueError:
                raise ConfigError("cron", f"{name} field {text!r} is not a number, range or list") from None
            if step < 1 or start < low or end > high or start > end:
                raise ConfigError("cron", f"{name} field {text!r} must lie within {low}-{high}")
            values.update(range(start, end + 1, step))
        if name == "weekday" and 7 in values:
            values = (values - {7}) | {0}
        fields.append(values)
    return tuple(fields)


def cron_matches(fields: tuple[set[int], ...], local: dt.datetime) -> bool:
    minute, hour, day, month, weekday = fields
    if local.minute not in minute or local.hour not in hour or local.month not in month:
        return False
    cron_weekday = (local.weekday() + 1) % 7  # cron: 0 = Sunday
    day_any, weekday_any = len(day) == 31, len(weekday) == 7
    if day_any or weekday_any:  # cron's rule: when both are restricted, either may match
        return local.day in day and cron_weekday in weekday
    return local.day in day or cron_weekday in weekday


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("timezone", f"unknown time zone {name!r}") from None


def validate_window(window: MaintenanceWindow) -> None:
    """Raise ConfigError (naming the field) unless the window is exactly one of the three forms."""
    one_off = window.starts_at is not None or window.ends_at is not None
    recurring = bool(window.cron) or window.start_time is not None
    if one_off == recurring:
        raise ConfigError("starts_at", "give either starts_at and ends_at, or cron, or start_time (+ weekdays)")
    if one_off:
        if window.starts_at is None or window.ends_at is None:
            raise ConfigError("ends_at" if window.ends_at is None else "starts_at", "is required for a one-off window")
        if window.ends_at <= window.starts_at:
            raise ConfigError("ends_at", "must be after starts_at")
        return
    if window.cron and window.start_time is not None:
        raise ConfigError("cron", "give cron or start_time, not both")
    if window.cron:
        parse_cron(window.cron)
        if window.weekdays:
            raise ConfigError("weekdays", "goes with start_time, not cron (put the weekday in the cron expression)")
    weekdays = window.weekdays or []
    if not isinstance(weekdays, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in weekdays):
        raise ConfigError("weekdays", "must be a list of 0 (Monday) … 6 (Sunday)")
    if not 1 <= window.duration <= MAX_DURATION_MINUTES:
        raise ConfigError("duration", f"must be between 1 and {MAX_DURATION_MINUTES} minutes")
    zone(window.timezone)


def active_span(window: MaintenanceWindow, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """(start, end) of the window's occurrence that covers `now` (the latest start that does), or None.

    A one-off window as written; a cron window's start minutes and a weekdays + start_time window's days
    read in its local time, so DST is honoured."""
    if not window.enabled:
        return None
    if window.starts_at is not None and window.ends_at is not None:
        return (window.starts_at, window.ends_at) if window.starts_at <= now < window.ends_at else None
    tz = zone(window.timezone)
    length = dt.timedelta(minutes=window.duration)
    if window.cron:
        fields = parse_cron(window.cron)
        # Every start minute that would still cover `now`, newest first.
        top = now.astimezone(UTC).replace(second=0, microsecond=0)
        for back in range(window.duration):
            start = top - dt.timedelta(minutes=back)
            if cron_matches(fields, start.astimezone(tz)):
                return start, start + length
        return None
    if window.start_time is None:
        return None
    local_today = now.astimezone(tz).date()
    for back in range(window.duration // 1440 + 2):
        day = local_today - dt.timedelta(days=back)
        if window.weekdays and day.weekday() not in window.weekdays:
            continue
        start = dt.datetime.combine(day, window.start_time, tzinfo=tz).astimezone(UTC)
        if start <= now < start + length:
            return start, start + length
    return None


def window_active(window: MaintenanceWindow, now: dt.datetime) -> bool:
    return active_span(window, now) is not None
