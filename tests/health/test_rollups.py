"""Hourly rollups: arithmetic against the raw rows, pruning in batches, and uptime across both."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.db.models import Count, Q

from health import rollups
from health.models import HourlyRollup, MaintenanceWindow, ProbeResult, Service
from health.windows import window_active
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def nearest_rank(values: list[float], p: float) -> float:
    """Percentile by the nearest-rank method, the plain way (the reference for the rollups)."""
    ordered = sorted(values)
    rank = -(-len(ordered) * int(p * 100) // 100)
    return ordered[max(rank, 1) - 1]


def seed(
    services: list[Service], days: int = 30, per_hour: int = 4, seed: int = 7, windows: list | None = None
) -> None:
    """`per_hour` results an hour for each service over `days` days before NOW, with outages and slow hours.

    With `windows`, a result taken while one of them applies to its service is flagged `maintenance`, as
    the runner does, and is mostly down (work in progress), so leaving it out changes the figures."""
    rng = random.Random(seed)
    rows = []
    start = NOW - dt.timedelta(days=days)
    for service in services:
        mine = [w for w in windows or [] if w.service_id in (None, service.pk)]
        for h in range(days * 24):
            hour = start + dt.timedelta(hours=h)
            for k in range(per_hour):
                when = hour + dt.timedelta(minutes=k * 60 // per_hour, seconds=7)
                maintenance = any(window_active(w, when) for w in mine)
                weights = [20, 5, 75] if maintenance else [85, 5, 10]
                status = rng.choices(["up", "degraded", "down"], weights=weights)[0]
                latency = None if status == "down" and rng.random() < 0.5 else round(rng.uniform(1, 900), 2)
                rows.append(
                    ProbeResult(
                        service=service,
                        checked_at=when,
                        status=status,
                        latency_ms=latency,
                        maintenance=maintenance,
                    )
                )
    ProbeResult.objects.bulk_create(rows, batch_size=2000)


def direct_uptime(service: Service, start: dt.datetime, end: dt.datetime) -> float:
    """Uptime the plain way: of the results outside maintenance, the share that answered."""
    counts = ProbeResult.objects.filter(
        service=service, checked_at__gte=start, checked_at__lt=end, maintenance=False
    ).aggregate(n=Count("id"), ok=Count("id", filter=Q(status__in=("up", "degraded"))))
    return 100.0 * counts["ok"] / counts["n"]


def direct_maintenance(service: Service, start: dt.datetime, end: dt.datetime) -> int:
    return ProbeResult.objects.filter(
        service=service, checked_at__gte=start, checked_at__lt=end, maintenance=True
    ).count()


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


@pytest.mark.slow("rolls up and prunes weeks of probe results")
def test_it_keeps_uptime_right_across_rollups_and_raw_rows_with_maintenance_windows(settings):
    """Windows that start and end mid-hour, in a non-UTC zone, per service and global: after pruning, the
    figures read from rollups + raw rows equal the direct computation over the raw rows, which leaves out
    every result taken in a window."""
    settings.RAW_RETENTION_DAYS = 7
    web, api = ServiceFactory(name="web"), ServiceFactory(name="api")
    windows = [
        # Nightly 03:10-04:35 Berlin time (CEST in June: 01:10-02:35 UTC), for web only.
        MaintenanceWindow.objects.create(
            name="nightly", service=web, cron="10 3 * * *", duration=85, timezone="Europe/Berlin"
        ),
        # Tuesdays 14:20 New York time for 50 minutes, for web only.
        MaintenanceWindow.objects.create(
            name="weekly",
            service=web,
            start_time=dt.time(14, 20),
            weekdays=[1],
            duration=50,
            timezone="America/New_York",
        ),
        # A one-off for everyone across the raw cutoff (NOW - 7 days), starting and ending mid-hour.
        MaintenanceWindow.objects.create(
            name="migration",
            starts_at=NOW - dt.timedelta(days=7, hours=2, minutes=20),
            ends_at=NOW - dt.timedelta(days=7, hours=-1, minutes=35),
        ),
        # A one-off for api in the last hour, which is not rolled up yet: read from raw rows.
        MaintenanceWindow.objects.create(
            name="hotfix", service=api, starts_at=NOW - dt.timedelta(minutes=40), ends_at=NOW - dt.timedelta(minutes=10)
        ),
    ]
    seed([web, api], windows=windows)
    assert ProbeResult.objects.filter(service=web, maintenance=True).count() > 30 * 6
    month = (NOW - dt.timedelta(days=30), NOW)
    spans = [month, (NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=2)), (NOW - dt.timedelta(days=13), NOW)]
    before = {
        (s.pk, span): (direct_uptime(s, *span), direct_maintenance(s, *span)) for s in (web, api) for span in spans
    }
    # Leaving the windows out matters: the figures are not what they would be counting everything.
    everything = ProbeResult.objects.filter(service=web).aggregate(
        n=Count("id"), ok=Count("id", filter=Q(status__in=("up", "degraded")))
    )
    assert before[(web.pk, month)][0] - 100.0 * everything["ok"] / everything["n"] > 1

    rollups.prune(NOW, batch=1000)

    assert not ProbeResult.objects.filter(checked_at__lt=rollups.raw_cutoff(NOW)).exists()
    assert rollups.rolled_until() == NOW - dt.timedelta(hours=1)
    assert (
        ProbeResult.objects.filter(service=api, maintenance=True, checked_at__gte=NOW - dt.timedelta(hours=1)).count()
        == 2
    )
    stored = HourlyRollup.objects.filter(service=web)
    assert sum(stored.values_list("maintenance", flat=True)) > 0
    assert all(r.maintenance_down + r.maintenance_degraded <= r.maintenance <= r.count for r in stored)
    for (service_id, span), (expected, excluded) in before.items():
        tally = rollups.tallies([service_id], *span)[service_id]
        assert tally.uptime == pytest.approx(expected, abs=1e-9)
        assert rollups.uptime([service_id], *span)[service_id] == pytest.approx(expected, abs=1e-9)
        assert tally.maintenance == excluded


def test_it_rolls_up_an_hours_maintenance_results_apart():
    service = ServiceFactory(name="web")
    hour = dt.datetime(2026, 6, 1, 10, tzinfo=UTC)
    rows = [("up", False), ("down", False), ("down", True), ("down", True), ("degraded", True), ("up", True)]
    for i, (status, maintenance) in enumerate(rows):
        ProbeResult.objects.create(
            service=service, checked_at=hour + dt.timedelta(minutes=i), status=status, maintenance=maintenance
        )
    (row,) = rollups.build_rollups(hour, hour + dt.timedelta(hours=1))
    assert (row.count, row.up, row.degraded, row.down) == (6, 2, 1, 3)  # what the probes saw
    assert (row.maintenance, row.maintenance_degraded, row.maintenance_down) == (4, 1, 2)
    row.save()
    ProbeResult.objects.all().delete()
    tally = rollups.tallies([service.pk], hour, hour + dt.timedelta(hours=1))[service.pk]
    assert (tally.ok, tally.counted, tally.maintenance) == (1, 2, 4)
    assert tally.uptime == 50.0


def test_it_answers_none_when_every_result_was_taken_in_maintenance():
    service = ServiceFactory(name="web")
    ProbeResult.objects.create(service=service, checked_at=NOW - dt.timedelta(hours=1), status="down", maintenance=True)
    tally = rollups.tallies([service.pk], NOW - dt.timedelta(days=1), NOW)[service.pk]
    assert (tally.counted, tally.maintenance, tally.uptime) == (0, 1, None)
    assert rollups.uptime([service.pk], NOW - dt.timedelta(days=1), NOW) == {service.pk: None}


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

    from health.runner import replay_round

    service = ServiceFactory(name="late")
    hour = rollups.floor_hour(timezone.now()) - dt.timedelta(hours=3)
    ProbeResult.objects.create(service=service, checked_at=hour + dt.timedelta(minutes=5), status="up", latency_ms=4)
    rollups.prune()
    assert HourlyRollup.objects.get(service=service, hour=hour).count == 1

    # A round spooled during an outage arrives after its hour was rolled up: the hour is rebuilt.
    when = hour + dt.timedelta(minutes=30)
    replay_round(
        {
            "checkedAt": when.isoformat(),
            "results": [{"service": service.pk, "status": "down", "latencyMs": None, "detail": "spooled"}],
        }
    )
    assert not HourlyRollup.objects.filter(service=service, hour=hour).exists()
    rollups.prune()
    rebuilt = HourlyRollup.objects.get(service=service, hour=hour)
    assert (rebuilt.count, rebuilt.up, rebuilt.down) == (2, 1, 1)
