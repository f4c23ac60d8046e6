"""The SLA report: per service and calendar month, availability with its method stated.

The month runs from 00:00 on its first day to 00:00 on the next month's first day in the portal's TIME_ZONE,
converted to UTC (so DST months are 1 h longer or shorter). The counts are `health.rollups.tallies` over that
range, the one computation behind /health/uptime (hourly rollups where raw results were pruned, raw rows for
the rest): availability is the same figure /health/uptime gives for the same window. This module only adds
time to it (each result stands for the service's probe interval) and takes apart what caused the failures:
those taken while a parent's incident caused the service's own (`Incident.parent`, set by health.runner) are
dependency time, left out of downtime and of probed time when SLA_EXCLUDE_DEPENDENCY_DOWNTIME is true. Time
with no result at all (the portal was down, the service not probed yet or disabled) is unknown, never up.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from health.models import Incident, Service
from health.rollups import Tally, tallies

UTC = dt.UTC
FORMATS = ("text", "csv", "json")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
# The end of a month still running is now; a result taken at `now` itself counts, as in uptime_tallies.
_INCLUSIVE = dt.timedelta(microseconds=1)

METHOD = (
    "Availability = answered / counted probe results in the month (up and degraded answered; down did not), "
    "the count /health/uptime makes. Each result stands for the service's probe interval (as configured now): "
    "probed time = counted results × interval, downtime = failed counted results × interval. Results taken in "
    "maintenance (a window or Pause) are left out and shown as maintenance. Failures while a parent's incident "
    "caused the service's incident are shown as dependency time (to the hour where results were rolled up); with "
    "SLA_EXCLUDE_DEPENDENCY_DOWNTIME=true they are left out of downtime and probed time, like maintenance. "
    "Time without results (the portal was down, or the service was not probed) and misconfigured results are "
    "unknown: never counted as up. The month is 00:00 on its first day to 00:00 on the next month's first day "
    "in TIME_ZONE."
)


class SlaError(ValueError):
    """Bad input to the report (a month, a service name): the message says what and how to fix it."""


@dataclass(frozen=True)
class Period:
    """A calendar month in `time_zone`, as a UTC range; `until` is its end, or now while it runs."""

    label: str
    time_zone: str
    start: dt.datetime
    end: dt.datetime
    until: dt.datetime

    @property
    def complete(self) -> bool:
        return self.until >= self.end

    @property
    def seconds(self) -> int:
        """The elapsed part of the month (the whole month once it is over), in seconds."""
        return int((self.until - self.start).total_seconds())

    @property
    def query_end(self) -> dt.datetime:
        return self.end if self.complete else self.until + _INCLUSIVE


def month_period(text: str, now: dt.datetime | None = None, time_zone: str | None = None) -> Period:
    """The month `YYYY-MM` in TIME_ZONE (or `time_zone`). Raises SlaError naming the problem."""
    match = _MONTH.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise SlaError(f"month must be YYYY-MM (e.g. 2026-11), got {text!r}")
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12:
        raise SlaError(f"month must be YYYY-MM with MM from 01 to 12, got {text!r}")
    if not 1970 <= year <= 9998:
        raise SlaError(f"month must be in the years 1970-9998, got {text!r}")
    name = time_zone or settings.TIME_ZONE
    tz = ZoneInfo(name)
    after = (year + 1, 1) if month == 12 else (year, month + 1)
    # Local midnights converted to UTC before any arithmetic: aware datetimes in one zone subtract by wall clock.
    start = dt.datetime(year, month, 1, tzinfo=tz).astimezone(UTC)
    end = dt.datetime(*after, 1, tzinfo=tz).astimezone(UTC)
    now = now or timezone.now()
    if start >= now:
        raise SlaError(f"month {year:04d}-{month:02d} has not begun yet ({name})")
    return Period(f"{year:04d}-{month:02d}", name, start, end, min(end, now))


def previous_month(now: dt.datetime | None = None, time_zone: str | None = None) -> str:
    """`YYYY-MM` of the last complete month in TIME_ZONE (what a report is usually wanted for)."""
    local = (now or timezone.now()).astimezone(ZoneInfo(time_zone or settings.TIME_ZONE))
    first = local.date().replace(day=1) - dt.timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"


@dataclass(frozen=True)
class ServiceSla:
    """One service's month: result counts (the uptime tally) and what they amount to in time.

    `dependency` counts the failed counted results taken while a parent's incident caused this service's
    (they are part of `counted - ok`)."""

    service: str
    interval_s: int
    period_s: int
    ok: int
    counted: int
    maintenance: int
    misconfigured: int
    dependency: int
    exclude_dependency: bool

    @property
    def failed(self) -> int:
        return self.counted - self.ok

    @property
    def _excluded(self) -> int:
        return self.dependency if self.exclude_dependency else 0

    @property
    def uptime(self) -> float | None:
        """The /health/uptime figure for this window (Tally.uptime): every counted result, dependency or not."""
        return Tally(self.ok, self.counted).uptime

    @property
    def availability(self) -> float | None:
        """Availability %: the uptime, or with dependency time excluded, answered / (counted - dependency).
        None when nothing counted (no results, or all in maintenance): unknown, not 100 %."""
        base = self.counted - self._excluded
        return 100.0 * self.ok / base if base > 0 else None

    @property
    def probed_s(self) -> int:
        return (self.counted - self._excluded) * self.interval_s

    @property
    def downtime_s(self) -> int:
        return (self.failed - self._excluded) * self.interval_s

    @property
    def dependency_s(self) -> int:
        return self.dependency * self.interval_s

    @property
    def maintenance_s(self) -> int:
        return self.maintenance * self.interval_s

    @property
    def unknown_s(self) -> int:
        """The month's time no result speaks for (misconfigured ones say nothing either). Never below 0: a
        service probed more often than its interval (by hand) has no unknown time, not negative."""
        return max(0, self.period_s - (self.counted + self.maintenance) * self.interval_s)

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "availability": _pct(self.availability),
            "uptime": _pct(self.uptime),
            "intervalSeconds": self.interval_s,
            "probedMinutes": minutes(self.probed_s),
            "downtimeMinutes": minutes(self.downtime_s),
            "maintenanceMinutes": minutes(self.maintenance_s),
            "dependencyMinutes": minutes(self.dependency_s),
            "unknownMinutes": minutes(self.unknown_s),
            "results": {
                "counted": self.counted,
                "answered": self.ok,
                "failed": self.failed,
                "maintenance": self.maintenance,
                "misconfigured": self.misconfigured,
                "dependency": self.dependency,
            },
        }


def minutes(seconds: int) -> float:
    return round(seconds / 60, 2)


def _pct(value: float | None) -> float | None:
    # Rounded as /health/uptime rounds, so the two answers compare equal.
    return None if value is None else round(value, 3)


CSV_COLUMNS = (
    "month",
    "service",
    "availability_pct",
    "uptime_pct",
    "probed_min",
    "downtime_min",
    "maintenance_min",
    "dependency_min",
    "unknown_min",
    "dependency_excluded",
    "interval_s",
    "results_counted",
    "results_answered",
    "results_maintenance",
    "results_misconfigured",
    "results_dependency",
    "period_start_utc",
    "period_end_utc",
)


@dataclass(frozen=True)
class SlaReport:
    period: Period
    exclude_dependency: bool
    services: list[ServiceSla]

    @property
    def method(self) -> str:
        return METHOD

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.period.label,
            "timeZone": self.period.time_zone,
            "start": self.period.start.isoformat(),
            "end": self.period.end.isoformat(),
            "until": self.period.until.isoformat(),
            "complete": self.period.complete,
            "periodMinutes": minutes(self.period.seconds),
            "excludeDependencyDowntime": self.exclude_dependency,
            "method": self.method,
            "services": [s.as_dict() for s in self.services],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for s in self.services:
            pct = [("" if v is None else f"{v:.3f}") for v in (s.availability, s.uptime)]
            writer.writerow(
                [
                    self.period.label,
                    s.service,
                    *pct,
                    *(minutes(v) for v in (s.probed_s, s.downtime_s, s.maintenance_s, s.dependency_s, s.unknown_s)),
                    "true" if self.exclude_dependency else "false",
                    s.interval_s,
                    s.counted,
                    s.ok,
                    s.maintenance,
                    s.misconfigured,
                    s.dependency,
                    self.period.start.isoformat(),
                    self.period.until.isoformat(),
                ]
            )
        return out.getvalue()

    def to_text(self) -> str:
        p = self.period
        span = f"{p.start:%Y-%m-%d %H:%M} UTC to {p.until:%Y-%m-%d %H:%M} UTC"
        lines = [
            f"SLA report {p.label} ({p.time_zone}: {span}, {minutes(p.seconds):.1f} min"
            + ("" if p.complete else ", month so far")
            + ")",
            "Dependency time: "
            + (
                "excluded from downtime (SLA_EXCLUDE_DEPENDENCY_DOWNTIME=true)"
                if self.exclude_dependency
                else "counted as downtime, shown apart (SLA_EXCLUDE_DEPENDENCY_DOWNTIME=false)"
            ),
            "",
        ]
        head = ("service", "availability", "probed min", "downtime min", "maintenance min", "dependency min")
        rows = [(*head, "unknown min")]
        for s in self.services:
            figure = "no data" if s.availability is None else f"{s.availability:.3f} %"
            times = (s.probed_s, s.downtime_s, s.maintenance_s, s.dependency_s, s.unknown_s)
            rows.append((s.service, figure, *(f"{minutes(v):.1f}" for v in times)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) + 1)]
        for row in rows if self.services else []:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            lines.append("  ".join(cells).rstrip())
        if not self.services:
            lines.append("(no services)")
        lines += ["", "Method: " + self.method]
        return "\n".join(lines) + "\n"

    def render(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise SlaError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return {"text": self.to_text, "csv": self.to_csv, "json": self.to_json}[fmt]()


def _merged(spans: Iterable[tuple[dt.datetime, dt.datetime]]) -> list[tuple[dt.datetime, dt.datetime]]:
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def dependency_failures(service_ids: list[int], start: dt.datetime, end: dt.datetime) -> dict[int, int]:
    """Per service, the failed counted results in [start, end) taken while a parent's incident caused its own:
    from the parent's incident opening (its SOFT failures then were caused too) to the child's resolution.

    Counted by `tallies` over each such span, so maintenance and misconfigured results are left out as in
    uptime; over rolled-up hours a span counts its whole first and last hour."""
    children = (
        Incident.objects.filter(service_id__in=service_ids, parent__isnull=False, opened_at__lt=end)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gt=start))
        .select_related("parent")
        .order_by()
    )
    spans: dict[int, list[tuple[dt.datetime, dt.datetime]]] = defaultdict(list)
    for child in children:
        if child.parent is None:  # filtered above; for the type checker
            continue
        a = max(start, min(child.parent.opened_at, child.opened_at))
        b = min(end, child.resolved_at or end)
        if a < b:
            spans[child.service_id].append((a, b))
    found: dict[int, int] = {}
    for sid, theirs in spans.items():
        total = Tally()
        for a, b in _merged(theirs):
            total += tallies([sid], a, b)[sid]
        found[sid] = total.counted - total.ok
    return found


def build(period: Period, names: Iterable[str] | None = None, *, exclude_dependency: bool | None = None) -> SlaReport:
    """The report for `period`: the services named (unknown names raise SlaError naming them), else all."""
    names = list(names or [])
    try:
        services = Service.objects.named(names) if names else list(Service.objects.order_by("name"))
    except Service.DoesNotExist as exc:
        raise SlaError(str(exc)) from None
    if exclude_dependency is None:
        exclude_dependency = settings.SLA_EXCLUDE_DEPENDENCY_DOWNTIME
    ids = [s.pk for s in services]
    counts = tallies(ids, period.start, period.query_end)
    caused = dependency_failures(ids, period.start, period.query_end)
    rows = []
    for s in services:
        t = counts[s.pk]
        rows.append(
            ServiceSla(
                service=s.name,
                interval_s=s.interval,
                period_s=period.seconds,
                ok=t.ok,
                counted=t.counted,
                maintenance=t.maintenance,
                misconfigured=t.misconfigured,
                # Never more than failed: rolled-up hours are whole, and spans may share one.
                dependency=min(caused.get(s.pk, 0), t.counted - t.ok),
                exclude_dependency=exclude_dependency,
            )
        )
    return SlaReport(period, exclude_dependency, rows)


def report(month: str, names: Iterable[str] | None = None, *, exclude_dependency: bool | None = None) -> SlaReport:
    """month_period + build: what the command and the page call."""
    return build(month_period(month), names, exclude_dependency=exclude_dependency)
