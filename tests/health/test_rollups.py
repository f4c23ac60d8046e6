"""Hourly rollups: arithmetic against the raw rows, pruning in batches, and uptime across both."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.db.models import Count, Q

from health import rollups
from health.models import HourlyRollup, ProbeResult, Service
from tests.health.factories import ServiceFactory

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def nearest_rank(values: list[float], p: float) -> float:
    """Percentile by the nearest-rank method, the plain way (the reference for the rollups)."""
    ordered = sorted(values)
    rank = -(-len(ordered) * int(p * 100) // 100)
    return ordered[max(rank, 1) - 1]


def seed(services: list[Service], days: int = 30, per_hour: int = 4, seed: int = 7) -> None:
    """`per_hour` results an hour for each service over `days` days before NOW, with outages and slow hours."""
    rng = random.Random(seed)
    rows = []
    start = NOW - dt.timedelta(days=days)
    for service in services:
        for h in range(days * 24):
            hour = start + dt.timedelta(hours=h)
            for k in range(per_hour):
                status = rng.choices(["up", "degraded", "down"], weights=[85, 5, 10])[0]
                latency = None if status == "down" and rng.random() < 0.5 else round(rng.uniform(1, 900), 2)
                rows.append(
                    ProbeResult(
                        service=service,
                        checked_at=hour + dt.timedelta(minutes=k * 60 // per_hour, seconds=7),
                        status=status,
                        latency_ms=latency,
                    )
                )
    ProbeResult.objects.bulk_create(rows, batch_size=2000)


def direct_uptime(service: Service, start: dt.datetime, end: dt.datetime) -> float:
    counts = ProbeResult.objects.filter(service=service, checked_at__gte=start, checked_at__lt=end).aggregate(
        n=Count("id"), ok=Count("id", filter=Q(status__in=("up", "degraded")))
    )
    return 100.0 * counts["ok"] / counts["n"]


def test_it_rolls_an_hour_up_exactly_as_the_raw_rows_say():
    service = ServiceFactory(name="web")
    hour = dt.datetime(2026, 6, 1, 10, tzinfo=UTC)
    latencies = [12.0, 3.5, 250.0, 40.0, 41.0, 7.25, 999.0, 18.0, 18.0, 60.0, 2.0]
    statuses = ["up", "up", "degraded", "up", "down", "up", "down", "up", "up", "up", "up"]
    for i, (latency, status) in enumerate(zip(latencies, statuses, strict=True)):
        ProbeResult.objects.create(
            service=service, checked_at=hour + dt.timedelta(minutes=5 * i), status=status, latency_ms=latency
        )
    ProbeResult.objects.create(service=service, checked_at=hour + dt.timedelta(minutes=59), status="down")  # no latency
    ProbeResult.objects.create(service=service, checked_at=hour + dt.timedelta(hours=1), status="up", latency_ms=1)
    (row,) = rollups.build_rollups(hour, hour + dt.timedelta(hours=1))
    assert (row.service_id, row.hour) == (service.pk, hour)
    assert (row.count, row.up, row.degraded, row.down) == (12, 8, 1, 3)
    assert row.latency_min == 2.0 and row.latency_max == 999.0
    assert row.latency_p50 == nearest_rank(latencies, 0.5) == 18.0
    assert row.latency_p95 == nearest_rank(latencies, 0.95) == 999.0


def test_it_prunes_in_batches_and_keeps_uptime_right_across_rollups_and_raw_rows(settings):
    settings.RAW_RETENTION_DAYS = 7
    web, api = ServiceFactory(name="web"), ServiceFactory(name="api")
    seed([web, api])
    month = (NOW - dt.timedelta(days=30), NOW)
    spans = [month, (NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=2)), (month[0], NOW - dt.timedelta(days=20))]
    before = {(s.pk, span): direct_uptime(s, *span) for s in (web, api) for span in spans}
    total = ProbeResult.objects.count()

    report = rollups.prune(NOW, batch=1000)

    cutoff = rollups.raw_cutoff(NOW)
    assert cutoff == NOW - dt.timedelta(days=7)
    assert report.results == total - ProbeResult.objects.count() > 0
    assert report.batches >= report.results // 1000 > 1  # many short DELETEs, not one
    assert not ProbeResult.objects.filter(checked_at__lt=cutoff).exists()
    assert ProbeResult.objects.filter(checked_at__gte=cutoff).count() == 2 * 7 * 24 * 4
    # 23 pruned days, and every kept hour that has already ended (the week but the current hour).
    kept_hours = 7 * 24 - 1
    assert HourlyRollup.objects.count() == report.rolled_up == 2 * (23 * 24 + kept_hours)
    assert sum(HourlyRollup.objects.values_list("count", flat=True)) == report.results + 2 * kept_hours * 4
    for (service_id, span), expected in before.items():
        assert rollups.uptime([service_id], *span)[service_id] == pytest.approx(expected, abs=1e-9)

    # Idempotent: a second run finds nothing to do and leaves the rollups as they were.
    snapshot = list(HourlyRollup.objects.order_by("pk").values())
    again = rollups.prune(NOW, batch=1000)
    assert (again.rolled_up, again.results, again.rollups) == (0, 0, 0)
    assert list(HourlyRollup.objects.order_by("pk").values()) == snapshot


def test_it_drops_rollups_past_their_retention(settings):
    settings.ROLLUP_RETENTION_DAYS = 400
    service = ServiceFactory(name="web")
    old, kept = NOW - dt.timedelta(days=401), NOW - dt.timedelta(days=399)
    for hour in (old, kept):
        HourlyRollup.objects.create(service=service, hour=rollups.floor_hour(hour), count=1, up=1)
    report = rollups.prune(NOW, batch=1)
    assert report.rollups == 1
    assert list(HourlyRollup.objects.values_list("hour", flat=True)) == [rollups.floor_hour(kept)]


def test_it_serves_hourly_chart_points_from_rollups_and_raw_rows(settings):
    settings.RAW_RETENTION_DAYS = 7
    service = ServiceFactory(name="web")
    seed([service], days=9, per_hour=2)
    rollups.prune(NOW)
    points = rollups.hourly(service.pk, NOW - dt.timedelta(days=9), NOW)
    assert len(points) == 9 * 24
    assert [p.hour for p in points] == [NOW - dt.timedelta(days=9) + dt.timedelta(hours=h) for h in range(9 * 24)]
    assert all(p.count == 2 for p in points)


def test_it_answers_none_for_a_service_never_probed():
    service = ServiceFactory(name="idle")
    assert rollups.uptime([service.pk], NOW - dt.timedelta(days=30), NOW) == {service.pk: None}


@pytest.mark.django_db
def test_it_rebuilds_an_hour_when_spooled_results_for_it_are_replayed():
    from django.utils import timezone

    from health.runner import _replay_round

    service = ServiceFactory(name="late")
    hour = rollups.floor_hour(timezone.now()) - dt.timedelta(hours=3)
    ProbeResult.objects.create(service=service, checked_at=hour + dt.timedelta(minutes=5), status="up", latency_ms=4)
    rollups.prune()
    assert HourlyRollup.objects.get(service=service, hour=hour).count == 1

    # A round spooled during an outage arrives after its hour was rolled up: the hour is rebuilt.
    when = hour + dt.timedelta(minutes=30)
    _replay_round(
        {
            "checkedAt": when.isoformat(),
            "results": [{"service": service.pk, "status": "down", "latencyMs": None, "detail": "spooled"}],
        }
    )
    assert not HourlyRollup.objects.filter(service=service, hour=hour).exists()
    rollups.prune()
    rebuilt = HourlyRollup.objects.get(service=service, hour=hour)
    assert (rebuilt.count, rebuilt.up, rebuilt.down) == (2, 1, 1)
