"""Read models for the dashboard: uptime, the uptime bar, sparklines and latency percentiles.

Everything here is aggregate SQL (TruncHour/TruncDay with Count/Avg and conditional counts)
that runs on SQLite and PostgreSQL, one query for all services at once, so a page costs a
constant number of queries however many services or results there are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, F, Q, Window
from django.db.models.functions import RowNumber, TruncHour, TruncMinute
from django.utils import timezone

from core.mask import mask
from dashboard import svg
from dispatch.scheduler import apply_scheduler_status
from health.models import UNKNOWN, HourlyRollup, Incident, ProbeResult, Service, overall_status
from health.probes.base import DEGRADED, DOWN, FIX_MARK, MISCONFIGURED, UP, fix_of
from health.rollups import nearest_rank, rolled_until, uptime_tallies
from recovery import policy
from recovery.models import RecoveryAttempt, RecoveryState

UTC = dt.UTC
BAR_SEGMENTS = 90
SPARK_HOURS = 24
STATES = (UP, DEGRADED, DOWN, MISCONFIGURED, "paused", UNKNOWN)
# The uptime bar's state for an hour (mostly) in maintenance: see uptime_bar().
MAINTENANCE = "maintenance"


class _NativeSqliteTrunc:
    """On SQLite, truncate with the native strftime(): aware datetimes are stored as UTC text, and
    Django's own Trunc there is a Python function called once a row (10x slower on 100k rows)."""

    sqlite_format = ""

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        sql, params = compiler.compile(self.lhs)  # type: ignore[attr-defined]
        return f"strftime('{self.sqlite_format}', {sql})", params


class HourBucket(_NativeSqliteTrunc, TruncHour):
    """The UTC hour of a datetime (TruncHour elsewhere)."""

    sqlite_format = "%%Y-%%m-%%d %%H:00:00"


class MinuteBucket(_NativeSqliteTrunc, TruncMinute):
    """The UTC minute of a datetime (TruncMinute elsewhere)."""

    sqlite_format = "%%Y-%%m-%%d %%H:%%M:00"


@dataclass(frozen=True)
class Range:
    """A latency chart range: how far back, and the bucket each point covers."""

    key: str
    span: dt.timedelta
    step: dt.timedelta
    trunc: type

    def floor(self, when: dt.datetime) -> dt.datetime:
        when = when.astimezone(UTC)
        if self.step == dt.timedelta(minutes=1):
            return when.replace(second=0, microsecond=0)
        if self.step == dt.timedelta(hours=1):
            return when.replace(minute=0, second=0, microsecond=0)
        return when.replace(hour=0, minute=0, second=0, microsecond=0)


RANGES = {
    "1h": Range("1h", dt.timedelta(hours=1), dt.timedelta(minutes=1), MinuteBucket),
    "24h": Range("24h", dt.timedelta(hours=24), dt.timedelta(hours=1), HourBucket),
    "7d": Range("7d", dt.timedelta(days=7), dt.timedelta(hours=1), HourBucket),
    # Hourly like 7d: older hours come from HourlyRollup (exact per-hour p50/p95), which a daily bucket could not merge.
    "30d": Range("30d", dt.timedelta(days=30), dt.timedelta(hours=1), HourBucket),
}
DEFAULT_RANGE = "24h"


@dataclass
class Segment:
    """One bar segment: its start, its state (see uptime_bar), the probe count, the failures that
    counted, and how many of the probes were taken in maintenance or misconfigured (neither counted)."""

    start: dt.datetime
    state: str
    total: int = 0
    bad: int = 0
    maintenance: int = 0
    misconfigured: int = 0


@dataclass
class Card:
    service: Service
    uptime: dict[str, float | None]
    bar: list[Segment]
    spark: list[float | None]
    # Per uptime window: how many results were taken in maintenance and left out of the figure.
    excluded: dict[str, int] = field(default_factory=dict)
    # Per uptime window: how many results were misconfigured, left out of the figure too.
    misconfigured: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return "paused" if self.service.is_paused else self.service.status

    @property
    def fix(self) -> str:
        """What to do about a misconfigured service ("" otherwise): the fix its probe detail carries."""
        return fix_of(self.service.last_detail) if self.state == MISCONFIGURED else ""

    @property
    def problem(self) -> str:
        """The configuration error of a misconfigured service, without its fix."""
        return self.service.last_detail.partition(FIX_MARK)[0] if self.state == MISCONFIGURED else ""

    @property
    def uptime_rows(self) -> list[tuple[str, float | None, int, int]]:
        """(window, uptime %, results left out as maintenance, left out as misconfigured) for the card."""
        return [
            (key, value, self.excluded.get(key, 0), self.misconfigured.get(key, 0))
            for key, value in self.uptime.items()
        ]

    @property
    def bar_svg(self) -> str:
        return svg.uptime_bar(self.bar, label=f"{self.service.name} last {len(self.bar)} hours")

    @property
    def spark_svg(self) -> str:
        return svg.sparkline(self.spark, label=f"{self.service.name} latency, 24 h")


@dataclass
class LatencyPoint:
    start: dt.datetime
    p50: float | None
    p95: float | None
    count: int


@dataclass
class Overview:
    status: str
    counts: dict[str, int]
    cards: list[Card]
    incidents: list[Incident]
    extra: dict[str, Any] = field(default_factory=dict)
    page: int = 1
    pages: int = 1
    total: int = 0


def _hour(when: dt.datetime) -> dt.datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hourly(service_ids: list[int], now: dt.datetime, hours: int = BAR_SEGMENTS) -> dict[int, dict[dt.datetime, dict]]:
    """Per service and hour (UTC) over the last `hours`: probe counts and a latency.

    `total` is every result, `maintenance` those taken in maintenance, `misconfigured` those the probe
    could not run as configured, `down` and `degraded` those outside maintenance (the ones that count).
    One `TruncHour` aggregate over raw rows for all services; hours whose raw rows were already pruned
    come from their `HourlyRollup` rows (latency: the hour's p50, as the mean is not kept).
    """
    start = _hour(now) - dt.timedelta(hours=hours - 1)
    out: dict[int, dict[dt.datetime, dict]] = {sid: {} for sid in service_ids}
    split = rolled_until()
    raw_start = start
    if split is not None and split > start:
        raw_start = split
        stored = HourlyRollup.objects.filter(service_id__in=service_ids, hour__gte=start, hour__lt=split)
        columns = (
            "count",
            "down",
            "degraded",
            "maintenance",
            "maintenance_down",
            "maintenance_degraded",
            "misconfigured",
        )
        for r in stored.values("service_id", "hour", "latency_p50", *columns):
            row = {
                "total": r["count"],
                "down": r["down"] - r["maintenance_down"],
                "degraded": r["degraded"] - r["maintenance_degraded"],
                "maintenance": r["maintenance"],
                "misconfigured": r["misconfigured"],
                "latency": r["latency_p50"],
            }
            out[r["service_id"]][_hour(r["hour"])] = row
    rows = (
        ProbeResult.objects.filter(service_id__in=service_ids, checked_at__gte=raw_start)
        .annotate(bucket=HourBucket("checked_at", tzinfo=UTC))
        .values("service_id", "bucket")
        .annotate(
            total=Count("id"),
            down=Count("id", filter=Q(status=DOWN, maintenance=False)),
            degraded=Count("id", filter=Q(status=DEGRADED, maintenance=False)),
            maintenance=Count("id", filter=Q(maintenance=True) & ~Q(status=MISCONFIGURED)),
            misconfigured=Count("id", filter=Q(status=MISCONFIGURED)),
            latency=Avg("latency_ms"),
        )
        .order_by()
    )
    for row in rows:
        out[row["service_id"]][_hour(row["bucket"])] = row
    return out


def uptime_bar(buckets: dict[dt.datetime, dict], now: dt.datetime, segments: int = BAR_SEGMENTS) -> list[Segment]:
    """90 hourly segments, oldest first; "none" where no data.

    A segment shows the worst state among the results that count toward uptime; an hour at least
    half of whose results were taken in maintenance shows "maintenance" instead, unless a result
    that counted was down (an outage outside the window stays visible: the bar agrees with the figure).
    Likewise an hour at least half of whose results were misconfigured shows "misconfigured": a
    configuration problem to fix, not downtime (those results are not counted either).
    """
    first = _hour(now) - dt.timedelta(hours=segments - 1)
    bar = []
    for i in range(segments):
        start = first + dt.timedelta(hours=i)
        row = buckets.get(start)
        if not row or not row["total"]:
            bar.append(Segment(start, "none"))
            continue
        total, maint, mis = row["total"], row.get("maintenance") or 0, row.get("misconfigured") or 0
        if maint and maint * 2 >= total and not row["down"]:
            state = MAINTENANCE
        elif mis and mis * 2 >= total and not row["down"]:
            state = MISCONFIGURED
        else:
            state = DOWN if row["down"] else DEGRADED if row["degraded"] else UP
        bar.append(Segment(start, state, total, row["down"], maint, mis))
    return bar


def sparkline(buckets: dict[dt.datetime, dict], now: dt.datetime, hours: int = SPARK_HOURS) -> list[float | None]:
    """Mean latency per hour over the last `hours`, oldest first; None where nothing was measured."""
    first = _hour(now) - dt.timedelta(hours=hours - 1)
    points = []
    for i in range(hours):
        row = buckets.get(first + dt.timedelta(hours=i))
        points.append(round(row["latency"], 1) if row and row["latency"] is not None else None)
    return points


def cards(services: list[Service], now: dt.datetime) -> list[Card]:
    """A card per service: two aggregate queries in all, whatever the number of services."""
    ids = [s.pk for s in services]
    if not ids:
        return []
    ups = uptime_tallies(ids, now)
    hours = hourly(ids, now)
    return [
        Card(
            s,
            {k: t.uptime for k, t in ups[s.pk].items()},
            uptime_bar(hours[s.pk], now),
            sparkline(hours[s.pk], now),
            {k: t.maintenance for k, t in ups[s.pk].items()},
            {k: t.misconfigured for k, t in ups[s.pk].items()},
        )
        for s in services
    ]


def state_counts(services: list[Service]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for s in services:
        key = "paused" if s.is_paused else s.status
        counts[key] = counts.get(key, 0) + 1
    return counts


def open_incidents() -> list[Incident]:
    return list(
        Incident.objects.filter(resolved_at__isnull=True)
        .select_related("service", "acknowledged_by")
        .order_by("-opened_at")
    )


# Card order: what needs a person first.
CARD_ORDER = {DOWN: 0, MISCONFIGURED: 1, DEGRADED: 2, UNKNOWN: 3, "paused": 4, UP: 5}


def overview(
    now: dt.datetime | None = None,
    *,
    scheduler: dict[str, Any] | None = None,
    page: int = 1,
    per_page: int | None = None,
) -> Overview:
    """What the overview shows, in a constant number of queries. With the scheduler's status, the
    overall status is the one `/health/status` gives (a late scheduler makes `healthy` `degraded`).

    Banner and counts cover every service; cards come a page at a time, problems first, and only the
    page's services have their uptime, bar and sparkline computed (a 1,000-service page was 13 MB).
    """
    now = now or timezone.now()
    per_page = per_page or settings.DASHBOARD_CARDS_PER_PAGE
    # Whether a Recover button makes sense, counted in the same query.
    enabled_actions = Count("recovery_actions", filter=Q(recovery_actions__enabled=True))
    services = list(Service.objects.annotate(recovery_actions_enabled=enabled_actions))
    ordered = sorted(services, key=lambda s: (CARD_ORDER.get("paused" if s.is_paused else s.status, 6), s.name))
    pages = max(1, -(-len(ordered) // per_page))
    page = min(max(1, page), pages)
    shown = ordered[(page - 1) * per_page : page * per_page]
    return Overview(
        status=apply_scheduler_status(overall_status(services), scheduler) if scheduler else overall_status(services),
        counts=state_counts(services),
        cards=cards(shown, now),
        incidents=open_incidents(),
        page=page,
        pages=pages,
        total=len(services),
    )


def latency_series(service: Service, range_key: str, now: dt.datetime | None = None) -> list[LatencyPoint]:
    """p50/p95 latency per bucket over a range, one point per bucket (None where no data).

    Percentiles by the nearest-rank method with window functions (ROW_NUMBER and COUNT over
    a partition by bucket), which SQLite (>= 3.25) and PostgreSQL both have; the database
    returns only the two ranked rows of each bucket, so the answer is bounded by the bucket
    count, not by the number of results.
    """
    rng = RANGES[range_key]
    now = now or timezone.now()
    first = rng.floor(now - rng.span) + rng.step
    p50: dict[dt.datetime, float] = {}
    p95: dict[dt.datetime, float] = {}
    counts: dict[dt.datetime, int] = {}
    raw_start = first
    split = rolled_until() if rng.step == dt.timedelta(hours=1) else None
    if split is not None and split > first:
        # Hours whose raw rows were pruned: their rollups hold the same nearest-rank p50/p95.
        raw_start = split
        stored = HourlyRollup.objects.filter(service=service, hour__gte=first, hour__lt=split, count__gt=0)
        for hour, n, r50, r95 in stored.values_list("hour", "count", "latency_p50", "latency_p95"):
            key = rng.floor(hour)
            counts[key] = n
            if r50 is not None:
                p50[key], p95[key] = r50, r95
    base = ProbeResult.objects.filter(service=service, checked_at__gte=raw_start, latency_ms__isnull=False).annotate(
        bucket=rng.trunc("checked_at", tzinfo=UTC)
    )
    ranked = (
        base.annotate(
            rank=Window(RowNumber(), partition_by=[F("bucket")], order_by=[F("latency_ms").asc(), F("id").asc()]),
            size=Window(Count("id"), partition_by=[F("bucket")]),
        )
        # Integer arithmetic for ceil(size * p), so both databases and Python agree exactly.
        .filter(Q(rank=(F("size") * 50 + 99) / 100) | Q(rank=(F("size") * 95 + 99) / 100))
        .values_list("bucket", "rank", "size", "latency_ms")
    )
    for bucket, rank, size, latency in ranked:
        key = rng.floor(bucket)
        counts[key] = size
        if rank == nearest_rank(size, 0.5):
            p50[key] = latency
        if rank == nearest_rank(size, 0.95):
            p95[key] = latency
    points = []
    start = first
    while start <= now:
        points.append(LatencyPoint(start, p50.get(start), p95.get(start), counts.get(start, 0)))
        start += rng.step
    return points


# --- the service page -------------------------------------------------------------------------


def service_config(service: Service) -> dict[str, Any]:
    """The service's configuration as the config file would say it, secrets masked."""
    out: dict[str, Any] = {
        "kind": service.kind,
        "interval": service.interval,
        "timeout": service.timeout,
        "critical": service.critical,
        "failure_threshold": service.failure_threshold,
        "degraded_latency_ms": service.degraded_latency_ms,
        "enabled": service.enabled,
    }
    out.update(mask(service.settings or {}))
    return out


def action_config(action: Any) -> dict[str, Any]:
    out = {"kind": action.kind, "timeout": action.timeout, "cooldown": action.cooldown, "auto": action.auto}
    out.update(mask(action.settings or {}))
    return out


@dataclass
class CooldownState:
    """What the Recover confirmation shows, read from the engine's RecoveryState row (no copy of its policy)."""

    actions: list[Any]
    next_action: Any
    last_attempt: Any
    ready_at: dt.datetime | None
    consecutive_failures: int
    escalated_at: dt.datetime | None
    running_since: dt.datetime | None

    @property
    def in_cooldown(self) -> bool:
        return self.ready_at is not None and self.ready_at > timezone.now()

    @property
    def escalated(self) -> bool:
        return self.escalated_at is not None


def cooldown_state(service: Service) -> CooldownState:
    state = RecoveryState.objects.filter(service=service).first()
    actions = policy.eligible_actions(service, auto=False)
    failures = state.consecutive_failures if state else 0
    last = RecoveryAttempt.objects.filter(service=service).order_by("-started_at", "-pk").first()
    return CooldownState(
        actions=actions,
        next_action=policy.choose_action(actions, failures) if actions else None,
        last_attempt=last,
        ready_at=state.next_allowed_at if state else None,
        consecutive_failures=failures,
        escalated_at=state.escalated_at if state else None,
        running_since=state.running_since if state else None,
    )
