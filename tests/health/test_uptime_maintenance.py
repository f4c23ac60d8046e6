"""Uptime leaves maintenance out: results taken while a service is paused (a maintenance window, one-off or
recurring in its own time zone, per service or global; or Pause) are stored and flagged, not counted in the
24 h / 7 d / 30 d figures, and the uptime bar shows their hours as "maintenance" — from raw rows and rollups."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from dashboard import reports
from health import rollups
from health.models import Incident, MaintenanceWindow, ProbeResult, Service
from health.probes.base import DOWN, UP, ProbeOutcome
from health.runner import record, replay_round
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def run_rounds(
    services: list[Service], start: dt.datetime, end: dt.datetime, status_at: Callable[[dt.datetime], str], minutes=10
) -> None:
    """A probe round every `minutes` in [start, end) through the runner, each service's outcome from status_at."""
    when = start
    while when < end:
        status = status_at(when)
        fresh = list(Service.objects.filter(pk__in=[s.pk for s in services]))
        outcome = ProbeOutcome(status, None if status == DOWN else 5.0, "refused" if status == DOWN else "ok")
        record(fresh, {s.name: outcome for s in fresh}, when)
        when += dt.timedelta(minutes=minutes)


def segment(card: reports.Card, hour: dt.datetime) -> reports.Segment:
    (found,) = [s for s in card.bar if s.start == hour]
    return found


def test_a_service_down_only_during_its_window_shows_100_percent_and_its_hour_in_maintenance(settings):
    settings.RAW_RETENTION_DAYS = 7
    web, api = ServiceFactory(name="web"), ServiceFactory(name="api")
    # Only web has the window; api has the same outage without one.
    MaintenanceWindow.objects.create(
        name="upgrade", service=web, starts_at=utc(2026, 6, 30, 9), ends_at=utc(2026, 6, 30, 10)
    )
    run_rounds([web, api], NOW - dt.timedelta(hours=24), NOW, lambda t: DOWN if t.hour == 9 and t.day == 30 else UP)

    flagged = ProbeResult.objects.filter(maintenance=True)
    assert flagged.count() == 6 and {r.service_id for r in flagged} == {web.pk}
    assert set(flagged.values_list("status", flat=True)) == {DOWN}  # stored as seen
    assert list(Incident.objects.values_list("service__name", flat=True)) == ["api"]

    up = rollups.uptime_by_window([web.pk, api.pk], NOW)
    assert up[web.pk] == {"24h": 100.0, "7d": 100.0, "30d": 100.0}
    assert up[api.pk]["24h"] == pytest.approx(100 * 138 / 144)

    web_card, api_card = reports.cards(list(Service.objects.filter(pk__in=[web.pk, api.pk]).order_by("-name")), NOW)
    assert web_card.excluded == {"24h": 6, "7d": 6, "30d": 6}
    assert api_card.excluded == {"24h": 0, "7d": 0, "30d": 0}
    window_hour = segment(web_card, utc(2026, 6, 30, 9))
    assert (window_hour.state, window_hour.total, window_hour.bad, window_hour.maintenance) == ("maintenance", 6, 0, 6)
    assert segment(api_card, utc(2026, 6, 30, 9)).state == "down"
    assert {s.state for s in web_card.bar[-25:-1]} == {"up", "maintenance"}  # the last: this hour, empty
    bar = web_card.bar_svg
    assert bar.count('class="seg seg-maintenance" fill="#3b82f6"') == 1
    assert "1 h maintenance" in bar
    assert "2026-06-30 09:00 UTC: maintenance (6 probes, 6 in maintenance: not counted in uptime" in bar

    # The same figures and bar once the hours are rolled up (the rollup path of tallies and hourly).
    rollups.prune(NOW)
    assert rollups.rolled_until() == NOW - dt.timedelta(hours=1)
    assert rollups.uptime_by_window([web.pk, api.pk], NOW) == up
    rolled = reports.cards([Service.objects.get(pk=web.pk)], NOW)[0]
    assert rolled.excluded == web_card.excluded
    assert [(s.state, s.total, s.bad, s.maintenance) for s in rolled.bar] == [
        (s.state, s.total, s.bad, s.maintenance) for s in web_card.bar
    ]


def test_a_recurring_window_in_its_own_time_zone_is_left_out_across_dst():
    """Daily 03:00-04:00 Berlin: 02:00-03:00 UTC on Saturday 28 March 2026 (CET), 01:00-02:00 UTC on
    Sunday 29 March (CEST). The service is down 01:00-03:00 UTC both days: half of it counts each day."""
    svc = ServiceFactory(name="db")
    MaintenanceWindow.objects.create(
        name="nightly", service=svc, cron="0 3 * * *", duration=60, timezone="Europe/Berlin"
    )
    start, end = utc(2026, 3, 28), utc(2026, 3, 30)
    run_rounds([svc], start, end, lambda t: DOWN if 1 <= t.hour < 3 else UP, minutes=15)

    flagged = sorted(ProbeResult.objects.filter(maintenance=True).values_list("checked_at", flat=True))
    expected = [utc(2026, 3, 28, 2, m) for m in (0, 15, 30, 45)] + [utc(2026, 3, 29, 1, m) for m in (0, 15, 30, 45)]
    assert flagged == expected
    assert not Incident.objects.filter(opened_at__in=expected).exists()
    # 192 results, 8 in a window; of the 184 counted, 8 were down outside it (01:00 on the 28th, 02:00 on the 29th).
    tally = rollups.tallies([svc.pk], start, end)[svc.pk]
    assert (tally.ok, tally.counted, tally.maintenance) == (176, 184, 8)
    assert rollups.uptime_by_window([svc.pk], end)[svc.pk]["24h"] == pytest.approx(100 * 88 / 92)

    card = reports.cards([Service.objects.get(pk=svc.pk)], end)[0]
    states = {
        h: segment(card, h).state
        for h in (utc(2026, 3, 28, 1), utc(2026, 3, 28, 2), utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))
    }
    assert states == {
        utc(2026, 3, 28, 1): "down",
        utc(2026, 3, 28, 2): "maintenance",
        utc(2026, 3, 29, 1): "maintenance",
        utc(2026, 3, 29, 2): "down",
    }


def test_a_global_window_is_left_out_of_every_services_uptime():
    a, b = ServiceFactory(name="a"), ServiceFactory(name="b")
    MaintenanceWindow.objects.create(
        name="all", starts_at=NOW - dt.timedelta(hours=2), ends_at=NOW - dt.timedelta(hours=1)
    )
    run_rounds([a, b], NOW - dt.timedelta(hours=3), NOW, lambda t: DOWN if t < NOW - dt.timedelta(hours=1) else UP)
    tallies = rollups.tallies([a.pk, b.pk], NOW - dt.timedelta(hours=3), NOW)
    # The first hour's failures count (no window then); the window's hour does not.
    assert {sid: (t.ok, t.counted, t.maintenance) for sid, t in tallies.items()} == {a.pk: (6, 12, 6), b.pk: (6, 12, 6)}


def test_paused_by_hand_is_maintenance_too_and_a_range_wholly_in_it_has_no_figure():
    svc = ServiceFactory(name="web")
    svc.set_paused(True, now=NOW - dt.timedelta(hours=2))
    run_rounds([svc], NOW - dt.timedelta(hours=2), NOW - dt.timedelta(hours=1), lambda t: DOWN)
    assert rollups.uptime_by_window([svc.pk], NOW)[svc.pk]["24h"] is None  # nothing counted: no figure, not 0 %
    card = reports.cards([Service.objects.get(pk=svc.pk)], NOW)[0]
    assert card.excluded["24h"] == 6
    assert segment(card, NOW - dt.timedelta(hours=2)).state == "maintenance"

    Service.objects.get(pk=svc.pk).set_paused(False, now=NOW - dt.timedelta(hours=1))
    run_rounds([svc], NOW - dt.timedelta(hours=1), NOW, lambda t: UP)
    assert rollups.uptime_by_window([svc.pk], NOW)[svc.pk]["24h"] == 100.0


def test_a_round_replayed_from_the_spool_is_flagged_by_the_window_at_its_own_time():
    svc = ServiceFactory(name="web")
    when = utc(2026, 6, 30, 9, 30)
    MaintenanceWindow.objects.create(
        name="upgrade", service=svc, starts_at=utc(2026, 6, 30, 9), ends_at=utc(2026, 6, 30, 10)
    )
    replay_round(
        {
            "checkedAt": when.isoformat(),
            "results": [{"service": svc.pk, "status": DOWN, "latencyMs": None, "detail": "x"}],
        }
    )
    assert ProbeResult.objects.get(service=svc).maintenance is True


@pytest.mark.parametrize(
    ("row", "state"),
    [
        ({"total": 6, "down": 0, "degraded": 0, "maintenance": 6}, "maintenance"),  # wholly
        ({"total": 6, "down": 0, "degraded": 1, "maintenance": 3}, "maintenance"),  # half: mostly
        ({"total": 6, "down": 1, "degraded": 0, "maintenance": 5}, "down"),  # a failure that counted shows
        ({"total": 6, "down": 0, "degraded": 1, "maintenance": 2}, "degraded"),  # a little: the counted state
        ({"total": 6, "down": 0, "degraded": 0, "maintenance": 2}, "up"),
        ({"total": 6, "down": 0, "degraded": 0}, "up"),  # a row without the key (as before)
    ],
)
def test_the_bar_shows_an_hour_mostly_in_maintenance_as_maintenance(row, state):
    hour = NOW - dt.timedelta(hours=1)
    (seg,) = reports.uptime_bar({hour: row}, NOW, segments=2)[:1]
    assert seg.state == state
    assert seg.maintenance == row.get("maintenance", 0)
