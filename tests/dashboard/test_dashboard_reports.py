from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from dashboard import reports, svg
from health import rollups
from health.models import ProbeResult
from tests.dashboard.dashboard_fixtures import make_service

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 28, 12, 30, tzinfo=dt.UTC)


def add(service, when: dt.datetime, status: str = "up", latency: float | None = 10.0) -> None:
    ProbeResult.objects.create(service=service, checked_at=when, status=status, latency_ms=latency)


def test_it_computes_p50_and_p95_per_bucket_by_nearest_rank():
    svc = make_service("api")
    hour = NOW.replace(minute=0) - dt.timedelta(hours=2)
    for ms in range(1, 101):  # 100 results, latencies 1..100 ms, in one hour
        add(svc, hour + dt.timedelta(seconds=30 * ms), latency=float(101 - ms))
    add(svc, hour + dt.timedelta(hours=1, minutes=5), latency=7.0)  # a bucket of one
    points = {p.start: p for p in reports.latency_series(svc, "24h", now=NOW)}
    assert len(points) == 24
    assert (points[hour].p50, points[hour].p95, points[hour].count) == (50.0, 95.0, 100)
    nxt = points[hour + dt.timedelta(hours=1)]
    assert (nxt.p50, nxt.p95, nxt.count) == (7.0, 7.0, 1)
    assert points[NOW.replace(minute=0)].p50 is None  # no data: a gap, not a zero


def test_it_ignores_other_services_and_results_outside_the_range():
    svc, other = make_service("api"), make_service("db")
    add(svc, NOW - dt.timedelta(minutes=10), latency=5.0)
    add(svc, NOW - dt.timedelta(hours=2), latency=999.0)
    add(other, NOW - dt.timedelta(minutes=10), latency=500.0)
    points = reports.latency_series(svc, "1h", now=NOW)
    assert len(points) == 60
    assert [p.p95 for p in points if p.p95 is not None] == [5.0]


def test_it_colours_the_uptime_bar_by_the_worst_state_and_greys_hours_without_data():
    svc = make_service("api")
    base = NOW.replace(minute=0)
    add(svc, base - dt.timedelta(hours=3, minutes=-5), "up")
    add(svc, base - dt.timedelta(hours=2, minutes=-5), "up")
    add(svc, base - dt.timedelta(hours=2, minutes=-6), "degraded")
    add(svc, base - dt.timedelta(hours=1, minutes=-5), "up")
    add(svc, base - dt.timedelta(hours=1, minutes=-7), "down")
    card = reports.cards([svc], NOW)[0]
    assert len(card.bar) == 90
    assert [s.state for s in card.bar[-4:]] == ["up", "degraded", "down", "none"]
    assert {s.state for s in card.bar[:-4]} == {"none"}  # the monitor was not running: never shown as up
    assert card.bar[-2].total == 2 and card.bar[-2].bad == 1


def test_it_counts_uptime_over_probed_time_only():
    svc = make_service("api")
    add(svc, NOW - dt.timedelta(hours=1), "up")
    add(svc, NOW - dt.timedelta(hours=2), "degraded")
    add(svc, NOW - dt.timedelta(hours=3), "down")
    add(svc, NOW - dt.timedelta(days=3), "down")
    add(svc, NOW - dt.timedelta(days=20), "up")
    add(svc, NOW - dt.timedelta(days=40), "down")  # outside every window
    up = rollups.uptime_by_window([svc.pk], NOW)[svc.pk]
    assert up["24h"] == pytest.approx(200 / 3)
    assert up["7d"] == pytest.approx(50.0)
    assert up["30d"] == pytest.approx(60.0)
    new = make_service("new")
    assert rollups.uptime_by_window([new.pk], NOW) == {new.pk: {"24h": None, "7d": None, "30d": None}}


def test_it_builds_the_sparkline_from_hourly_means():
    svc = make_service("api")
    add(svc, NOW - dt.timedelta(minutes=5), latency=10.0)
    add(svc, NOW - dt.timedelta(minutes=6), latency=30.0)
    add(svc, NOW - dt.timedelta(minutes=7), latency=None)
    spark = reports.cards([svc], NOW)[0].spark
    assert len(spark) == 24
    assert spark[-1] == 20.0
    assert spark[:-1] == [None] * 23


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("url", "postgres://app:pw123@db:5432/x", "postgres://••••••@db:5432/x"),
        ("url", "https://h/x?token=abc&page=2", "https://h/x?token=••••••&page=2"),
        ("dsn", "host=db password=pw123 user=app", "host=db password=•••••• user=app"),
        ("password", "pw123", "••••••"),
        ("api_key", "k", "••••••"),
        ("body", '{"x": "${SECRET}"}', "••••••"),
        ("dsn_env", "PG_DSN", "PG_DSN"),
        ("host", "127.0.0.1", "127.0.0.1"),
        ("argv", ["run", "--token=${T}"], ["run", "••••••"]),
    ],
)
def test_it_masks_secrets(key, value, shown):
    assert reports.mask(value, key) == shown


def test_it_masks_every_header_and_env_value():
    assert reports.mask({"headers": {"X-A": "plain"}, "env": {"A": "1"}}) == {
        "headers": {"X-A": "••••••"},
        "env": {"A": "••••••"},
    }


def test_it_draws_charts_with_text_alternatives_and_gaps():
    line = svg.sparkline([1.0, 2.0, None, 4.0, 5.0], label="api")
    assert line.count("<path") == 2  # split at the gap
    assert svg.sparkline([None, 3.0, None]).count("<path") == 1  # a lone point is still drawn
    assert 'aria-label="api: last 5 ms, max 5 ms"' in line
    assert "no data" in svg.sparkline([None, None])
    bar = svg.uptime_bar([reports.Segment(NOW, "down", 3, 3), reports.Segment(NOW, "none")])
    assert 'class="seg seg-down"' in bar and 'class="seg seg-none"' in bar
    assert "1 h down, 1 h no data" in bar
    chart = svg.latency_chart([reports.LatencyPoint(NOW, 1.0, 2.0, 5)], range_key="1h")
    assert '<circle class="p50"' in chart and "12:30" in chart
    empty = svg.latency_chart([reports.LatencyPoint(NOW, None, None, 0)], range_key="24h")
    assert "no data in this range" in empty


def test_it_draws_maintenance_hours_in_a_colour_and_height_of_their_own():
    bar = svg.uptime_bar(
        [
            reports.Segment(NOW, "maintenance", 6, 0, 6),
            reports.Segment(NOW, "up", 6, 0, 2),
            reports.Segment(NOW, "up", 6, 0),
        ],
        label="api",
    )
    assert bar.count('class="seg seg-maintenance" fill="#3b82f6"') == 1
    assert 'height="10.1"' in bar  # 0.42 of 24: between "no data" (0.3) and "up" (0.55)
    assert "maintenance (6 probes, 6 in maintenance: not counted in uptime; 0 failed outside it)" in bar
    assert "up (6 probes, 2 in maintenance: not counted in uptime; 0 failed outside it)" in bar
    assert "up (6 probes, 0 failed)" in bar
    assert 'aria-label="api: 2 h up, 1 h maintenance"' in bar


def test_it_escapes_text_in_svg():
    assert "<script>" not in svg.sparkline([1.0], label="<script>")
    assert timezone.is_aware(NOW)


def test_it_reads_hourly_rollups_where_raw_results_were_pruned():
    from health.models import HourlyRollup

    svc = make_service("api")
    old = NOW.replace(minute=0) - dt.timedelta(days=10)
    HourlyRollup.objects.create(
        service=svc, hour=old, count=10, up=6, degraded=0, down=4, latency_p50=40.0, latency_p95=90.0
    )
    add(svc, NOW - dt.timedelta(hours=1), "up", latency=5.0)
    up = rollups.uptime_by_window([svc.pk], NOW)[svc.pk]
    assert up["24h"] == 100.0 and up["7d"] == 100.0
    assert up["30d"] == pytest.approx(100 * 7 / 11)
    points = {p.start: p for p in reports.latency_series(svc, "30d", now=NOW)}
    assert (points[old].p50, points[old].p95, points[old].count) == (40.0, 90.0, 10)
    latest = points[NOW.replace(minute=0) - dt.timedelta(hours=1)]
    assert (latest.p50, latest.count) == (5.0, 1)


def test_it_fills_the_uptime_bar_from_rollups_when_recent_hours_were_rolled_up():
    from health.models import HourlyRollup

    svc = make_service("api")
    hour = NOW.replace(minute=0) - dt.timedelta(hours=5)
    HourlyRollup.objects.create(service=svc, hour=hour, count=6, up=5, degraded=0, down=1, latency_p50=12.0)
    add(svc, NOW - dt.timedelta(minutes=1), "up", latency=3.0)
    card = reports.cards([svc], NOW)[0]
    assert card.bar[-6].state == "down" and card.bar[-6].total == 6
    assert card.bar[-1].state == "up"
    assert card.spark[-6] == 12.0 and card.spark[-1] == 3.0
