"""Retention: raw probe results are rolled up into hourly rows, then pruned in batches.

Raw `ProbeResult` rows are kept RAW_RETENTION_DAYS (7); before an hour's rows are deleted they
become one `HourlyRollup` per service (count, up/degraded/down, latency min/p50/p95/max), kept
ROLLUP_RETENTION_DAYS (400). The cut is at a whole hour, an hour is rolled up once (existing
rollups are never recomputed from what may already be a partly pruned hour), and rows are deleted
PRUNE_BATCH_SIZE at a time in short transactions — never one huge DELETE that locks the table.
Running it twice changes nothing the second time.

`uptime()` reads rollups for the hours that have them and raw rows for the rest, so a 30-day
figure stays right on a database that holds one week of raw rows.

Maintenance: a result taken while its service was paused (a maintenance window, Pause) carries
`ProbeResult.maintenance`, set by the runner when it is written, and a rollup counts those results
(`maintenance`, of them `maintenance_degraded`/`maintenance_down`). Uptime leaves them out on both
paths, so the raw and the rolled-up figures agree however a window was defined or later edited.

Misconfigured: a `misconfigured` result (the probe could not run as configured: an unset variable)
says nothing about the service, so like maintenance it is stored and left out of uptime, on both
paths; a rollup counts it in `count` and `misconfigured` only (in none of up/degraded/down).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from core.db import run_db
from health.models import HourlyRollup, ProbeResult
from health.probes.base import DEGRADED, MISCONFIGURED, UP

log = logging.getLogger("opsportal.health")
UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
# How long after an hour ends before it is rolled up: late results (a slow round) land first.
# Results replayed from the outage spool later than that invalidate their hour (see invalidate()).
ROLLUP_DELAY = dt.timedelta(hours=1)


def nearest_rank(size: int, p: float) -> int:
    """The 1-based rank of the p-th percentile of `size` sorted values, by the nearest-rank method:
    ceil(size * p) in integer arithmetic, so Python, SQLite and PostgreSQL agree exactly. The one
    definition, used by the rollups and the latency charts (dashboard.reports)."""
    return (size * round(p * 100) + 99) // 100


def floor_hour(when: dt.datetime) -> dt.datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def raw_cutoff(now: dt.datetime | None = None, days: int | None = None) -> dt.datetime:
    """Raw rows before this whole hour are rolled up and deleted."""
    return floor_hour((now or timezone.now()) - dt.timedelta(days=days or settings.RAW_RETENTION_DAYS))


def rollup_cutoff(now: dt.datetime | None = None) -> dt.datetime:
    return floor_hour((now or timezone.now()) - dt.timedelta(days=settings.ROLLUP_RETENTION_DAYS))


@dataclass
class _Hour:
    count: int = 0
    up: int = 0
    degraded: int = 0
    down: int = 0
    maintenance: int = 0
    maintenance_degraded: int = 0
    maintenance_down: int = 0
    misconfigured: int = 0

    def __post_init__(self) -> None:
        self.latencies: list[float] = []

    def add(self, status: str, latency: float | None, maintenance: bool = False) -> None:
        self.count += 1
        if status == MISCONFIGURED:  # no verdict on the service: not counted, whether in maintenance or not
            self.misconfigured += 1
            return
        if status == UP:
            self.up += 1
        elif status == DEGRADED:
            self.degraded += 1
            self.maintenance_degraded += maintenance
        else:
            self.down += 1
            self.maintenance_down += maintenance
        self.maintenance += maintenance
        if latency is not None:
            self.latencies.append(latency)

    def row(self, service_id: int, hour: dt.datetime) -> HourlyRollup:
        values = sorted(self.latencies)
        n = len(values)
        return HourlyRollup(
            service_id=service_id,
            hour=hour,
            count=self.count,
            up=self.up,
            degraded=self.degraded,
            down=self.down,
            maintenance=self.maintenance,
            maintenance_degraded=self.maintenance_degraded,
            maintenance_down=self.maintenance_down,
            misconfigured=self.misconfigured,
            latency_min=values[0] if n else None,
            latency_p50=values[nearest_rank(n, 0.5) - 1] if n else None,
            latency_p95=values[nearest_rank(n, 0.95) - 1] if n else None,
            latency_max=values[-1] if n else None,
        )


def build_rollups(start: dt.datetime, end: dt.datetime, service_id: int | None = None) -> list[HourlyRollup]:
    """Hourly rows for the raw results in [start, end) (whole hours), not yet saved."""
    hours: dict[tuple[int, dt.datetime], _Hour] = defaultdict(_Hour)
    rows = ProbeResult.objects.filter(checked_at__gte=start, checked_at__lt=end)
    if service_id is not None:
        rows = rows.filter(service_id=service_id)
    rows = rows.order_by().values_list("service_id", "checked_at", "status", "latency_ms", "maintenance")
    for service_id, checked_at, status, latency, maintenance in rows.iterator(chunk_size=5000):
        hours[(service_id, floor_hour(checked_at))].add(status, latency, maintenance)
    return [h.row(sid, hour) for (sid, hour), h in sorted(hours.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


def roll_up(end: dt.datetime, *, dry_run: bool = False) -> int:
    """Roll up every hour before `end` that has raw rows and no rollup yet, a day at a time.

    Returns the number of rollup rows written (or that would be, for a dry run).
    """
    oldest = ProbeResult.objects.filter(checked_at__lt=end).aggregate(t=Min("checked_at"))["t"]
    if oldest is None:
        return 0
    written = 0
    start = floor_hour(oldest)
    while start < end:
        stop = min(start + dt.timedelta(days=1), end)
        done = set(
            HourlyRollup.objects.filter(hour__gte=start, hour__lt=stop).values_list("service_id", "hour").order_by()
        )
        new = [r for r in build_rollups(start, stop) if (r.service_id, r.hour) not in done]
        if new and not dry_run:
            with transaction.atomic():
                # ignore_conflicts: a concurrent pruner that wrote the same hour wins, with the same numbers.
                HourlyRollup.objects.bulk_create(new, ignore_conflicts=True)
        written += len(new)
        start = stop
    return written


def delete_in_batches(queryset, batch: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Delete a queryset's rows `batch` at a time, each batch its own short transaction.

    Returns (rows deleted, batches)."""
    total = batches = 0
    manager = queryset.model.objects
    while True:
        ids = list(queryset.values_list("pk", flat=True).order_by("pk")[:batch])
        if not ids:
            return total, batches
        total += run_db(lambda ids=ids: manager.filter(pk__in=ids).delete()[0])
        batches += 1


@dataclass
class PruneReport:
    rolled_up: int
    results: int
    rollups: int
    batches: int
    dry_run: bool

    def summary(self) -> str:
        verb = "would" if self.dry_run else "did"
        return (
            f"pruneresults ({verb}): {self.rolled_up} hourly rollups written, {self.results} probe results "
            f"deleted, {self.rollups} old rollups deleted, in {self.batches} batches"
        )


def prune(
    now: dt.datetime | None = None, *, batch: int | None = None, dry_run: bool = False, raw_days: int | None = None
) -> PruneReport:
    """Roll up, then delete raw rows older than RAW_RETENTION_DAYS and rollups older than ROLLUP_RETENTION_DAYS."""
    now = now or timezone.now()
    batch = batch or settings.PRUNE_BATCH_SIZE
    cutoff = raw_cutoff(now, raw_days)
    old_results = ProbeResult.objects.filter(checked_at__lt=cutoff)
    old_rollups = HourlyRollup.objects.filter(hour__lt=rollup_cutoff(now))
    # Every hour that ended ROLLUP_DELAY ago is rolled up now, not only before its raw rows go: the
    # dashboard and uptime then read ~1 row per service-hour instead of every raw result.
    rolled = roll_up(max(cutoff, floor_hour(now - ROLLUP_DELAY)), dry_run=dry_run)
    if dry_run:
        n_results, n_rollups = old_results.count(), old_rollups.count()
        batches = -(-n_results // batch) + -(-n_rollups // batch)
        return PruneReport(rolled, n_results, n_rollups, batches, True)
    n_results, b1 = delete_in_batches(old_results, batch)
    n_rollups, b2 = delete_in_batches(old_rollups, batch)
    report = PruneReport(rolled, n_results, n_rollups, b1 + b2, False)
    if rolled or n_results or n_rollups:
        log.info("Retention: %s", report.summary())
    return report


def invalidate(service_ids: Iterable[int], when: dt.datetime) -> int:
    """Drop the rollups of the hour `when` falls in, for results that arrived after it was rolled up.

    Only while the hour's raw rows are still kept: the next roll-up rebuilds it from them.
    """
    hour = floor_hour(when)
    if hour < raw_cutoff():
        return 0
    deleted, _ = HourlyRollup.objects.filter(service_id__in=list(service_ids), hour=hour).delete()
    return deleted


# --- reading --------------------------------------------------------------------------------------
def rolled_until() -> dt.datetime | None:
    """The end of the newest rolled-up hour: before it, rollups answer; from it on, raw rows do."""
    last = HourlyRollup.objects.aggregate(h=Max("hour"))["h"]
    return last + HOUR if last else None


@dataclass(frozen=True)
class Tally:
    """A service's results over a range, as uptime counts them.

    `counted` results were taken outside maintenance, `ok` of them answered (up or degraded);
    `maintenance` results were taken while the service was paused and are left out, and so are the
    `misconfigured` ones (the probe could not run as configured).
    """

    ok: int = 0
    counted: int = 0
    maintenance: int = 0
    misconfigured: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.ok + other.ok,
            self.counted + other.counted,
            self.maintenance + other.maintenance,
            self.misconfigured + other.misconfigured,
        )

    @property
    def uptime(self) -> float | None:
        """Uptime %, None when nothing counted (never probed, or only in maintenance)."""
        return 100.0 * self.ok / self.counted if self.counted else None


_OK = (UP, DEGRADED)


def _tally_rows(
    ids: list[int], start: dt.datetime, end: dt.datetime, *, by_day: bool
) -> Iterator[tuple[int, dt.datetime | None, Tally]]:
    """(service, UTC day or None, Tally) rows over [start, end): rollups before `rolled_until()` (whole hours,
    an hour counts when it starts inside the range), raw rows after. Two queries."""
    split = rolled_until()
    raw_start = start
    if split is not None and start < split:
        raw_start = min(max(start, split), end)
        rollups = HourlyRollup.objects.filter(service_id__in=ids, hour__gte=floor_hour(start), hour__lt=min(split, end))
        if by_day:
            rollups = rollups.annotate(day=TruncDay("hour", tzinfo=dt.UTC))
        rows = (
            rollups.values("service_id", *(["day"] if by_day else []))
            .annotate(
                n=Sum("count"),
                answered=Sum("up") + Sum("degraded"),
                m=Sum("maintenance"),
                m_down=Sum("maintenance_down"),
                mis=Sum("misconfigured"),
            )
            .order_by()
        )
        for row in rows:
            n, m, m_down, mis = row["n"] or 0, row["m"] or 0, row["m_down"] or 0, row["mis"] or 0
            # Of the results in maintenance, those not down answered: take them out of `ok` too.
            ok = (row["answered"] or 0) - (m - m_down)
            yield row["service_id"], row.get("day"), Tally(ok, n - m - mis, m, mis)
    if raw_start < end:
        misconfigured = Q(status=MISCONFIGURED)
        counted = Q(maintenance=False) & ~misconfigured
        raw = ProbeResult.objects.filter(service_id__in=ids, checked_at__gte=raw_start, checked_at__lt=end)
        if by_day:
            raw = raw.annotate(day=TruncDay("checked_at", tzinfo=dt.UTC))
        rows = (
            raw.values("service_id", *(["day"] if by_day else []))
            .annotate(
                n=Count("id", filter=counted),
                ok=Count("id", filter=counted & Q(status__in=_OK)),
                m=Count("id", filter=Q(maintenance=True) & ~misconfigured),
                mis=Count("id", filter=misconfigured),
            )
            .order_by()
        )
        for row in rows:
            yield row["service_id"], row.get("day"), Tally(row["ok"], row["n"], row["m"], row["mis"])


def tallies(service_ids: Iterable[int], start: dt.datetime, end: dt.datetime) -> dict[int, Tally]:
    """A Tally per service over [start, end). Two queries, whatever the number of services.

    The part before `rolled_until()` comes from rollups, whole hours (an hour counts when it starts
    inside the range); the rest from raw rows. Results taken in maintenance, and misconfigured ones, are
    counted apart on both.
    """
    ids = list(service_ids)
    out = {sid: Tally() for sid in ids}
    for sid, _, tally in _tally_rows(ids, start, end, by_day=False):
        out[sid] += tally
    return out


def tallies_by_day(service_ids: Iterable[int], start: dt.datetime, end: dt.datetime) -> dict[int, dict[dt.date, Tally]]:
    """tallies(), split by UTC day: {service: {date: Tally}}; a day without any result is absent."""
    ids = list(service_ids)
    out: dict[int, dict[dt.date, Tally]] = {sid: {} for sid in ids}
    for sid, day, tally in _tally_rows(ids, start, end, by_day=True):
        key = day.astimezone(dt.UTC).date() if isinstance(day, dt.datetime) else day
        out[sid][key] = out[sid].get(key, Tally()) + tally
    return out


def counts(service_ids: Iterable[int], start: dt.datetime, end: dt.datetime) -> dict[int, tuple[int, int]]:
    """(ok, total) per service over [start, end) of the results that count (taken outside maintenance);
    ok is up or degraded (it answered). See tallies()."""
    return {sid: (t.ok, t.counted) for sid, t in tallies(service_ids, start, end).items()}


def uptime(service_ids: Iterable[int], start: dt.datetime, end: dt.datetime) -> dict[int, float | None]:
    """Uptime % per service over [start, end), None where nothing counted (see Tally.uptime)."""
    return {sid: t.uptime for sid, t in tallies(service_ids, start, end).items()}


def hourly(service_id: int, start: dt.datetime, end: dt.datetime) -> list[HourlyRollup]:
    """Hourly points for a chart over a long range: stored rollups, then the raw hours rolled up on the fly."""
    split = rolled_until() or floor_hour(start)
    stored = list(
        HourlyRollup.objects.filter(
            service_id=service_id, hour__gte=floor_hour(start), hour__lt=min(split, end)
        ).order_by("hour")
    )
    return stored + build_rollups(max(split, floor_hour(start)), end, service_id)


# --- uptime per window (the dashboard, GET /health/uptime) ---
UPTIME_WINDOWS = {"24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7), "30d": dt.timedelta(days=30)}


def uptime_tallies(service_ids: list[int], now: dt.datetime) -> dict[int, dict[str, Tally]]:
    """What the uptime over 24 h / 7 d / 30 d is made of, per service: `health.rollups.tallies`
    (hourly rollups where raw results were pruned, aggregate SQL over raw rows for the rest), two
    queries a window for all services."""
    out: dict[int, dict[str, Tally]] = {sid: {} for sid in service_ids}
    for key, span in UPTIME_WINDOWS.items():
        for sid, tally in tallies(service_ids, now - span, now + dt.timedelta(microseconds=1)).items():
            out[sid][key] = tally
    return out


def uptime_by_window(service_ids: list[int], now: dt.datetime) -> dict[int, dict[str, float | None]]:
    """Uptime % per service over 24 h / 7 d / 30 d.

    Only probed time counts: an hour without results (the portal was not running) is neither
    up nor down, so monitor downtime never turns into uptime. `degraded` answered, so it is up.
    Results taken in maintenance (a window, or paused) do not count either way, as in Uptime Kuma
    and Statuspage: a service down only during its window shows 100 %.
    """
    return {sid: {k: t.uptime for k, t in windows.items()} for sid, windows in uptime_tallies(service_ids, now).items()}
