"""status.pages without HTTP: a service's state on a page, the overall words, and when maintenance starts and ends."""

from __future__ import annotations

import datetime as dt

import pytest

from health.models import MaintenanceWindow, Service
from health.windows import active_span
from status.pages import Component, component_id, component_state, next_start, overall

UTC = dt.UTC


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"status": "up"}, "up"),
        ({"status": "degraded"}, "degraded"),
        ({"status": "down", "state_type": "soft"}, "partial"),
        ({"status": "down", "state_type": "hard"}, "down"),
        ({"status": "down", "in_maintenance": True}, "maintenance"),
        ({"status": "up", "enabled": False}, "maintenance"),
        ({"status": "unknown"}, "unknown"),
        ({"status": "misconfigured"}, "unknown"),
    ],
)
def test_it_maps_a_services_state_to_the_page(fields, state):
    assert component_state(Service(name="s", kind="tcp", **fields)) == state


def component(state: str, critical: bool = True) -> Component:
    return Component("x", "X", state, critical, [], None, None, 0)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([("up", True), ("up", False)], "none"),
        ([("up", True), ("maintenance", True)], "maintenance"),
        ([("unknown", True), ("maintenance", True)], "unknown"),
        ([("degraded", True), ("unknown", True)], "minor"),
        ([("down", False), ("degraded", True)], "major"),
        ([("partial", True)], "major"),
        ([("down", True), ("up", True)], "critical"),
        ([], "none"),
    ],
)
def test_it_names_the_worst_state_overall(states, expected):
    assert overall([component(s, c) for s, c in states]) == expected


def test_its_component_ids_are_stable_and_name_no_service():
    assert component_id("public", "db-primary") == component_id("public", "db-primary")
    assert component_id("public", "db-primary") != component_id("other", "db-primary")
    assert "db" not in component_id("public", "db-primary")


def test_it_finds_the_next_start_of_each_kind_of_window():
    now = dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a Monday
    one_off = MaintenanceWindow(starts_at=now + dt.timedelta(days=20), ends_at=now + dt.timedelta(days=20, hours=1))
    assert next_start(one_off, now) == (one_off.starts_at, one_off.ends_at)
    cron = MaintenanceWindow(cron="0 3 * * *", duration=30, timezone="Europe/Berlin")
    assert next_start(cron, now) == (
        dt.datetime(2026, 12, 1, 2, 0, tzinfo=UTC),
        dt.datetime(2026, 12, 1, 2, 30, tzinfo=UTC),
    )
    sunday = MaintenanceWindow(weekdays=[6], start_time=dt.time(4, 0), duration=60, timezone="UTC")
    assert next_start(sunday, now) == (
        dt.datetime(2026, 12, 6, 4, 0, tzinfo=UTC),
        dt.datetime(2026, 12, 6, 5, 0, tzinfo=UTC),
    )
    # Recurring windows are announced a week ahead, not further.
    yearly = MaintenanceWindow(cron="0 3 1 6 *", duration=30)
    assert next_start(yearly, now) is None
    assert next_start(MaintenanceWindow(starts_at=now - dt.timedelta(hours=1), ends_at=now), now) is None


def test_it_finds_the_span_of_an_open_recurring_window():
    now = dt.datetime(2026, 12, 1, 2, 10, 30, tzinfo=UTC)
    cron = MaintenanceWindow(cron="0 3 * * *", duration=30, timezone="Europe/Berlin")
    assert active_span(cron, now) == (
        dt.datetime(2026, 12, 1, 2, 0, tzinfo=UTC),
        dt.datetime(2026, 12, 1, 2, 30, tzinfo=UTC),
    )
    daily = MaintenanceWindow(start_time=dt.time(23, 30), duration=120, timezone="UTC")
    late = dt.datetime(2026, 12, 1, 0, 15, tzinfo=UTC)
    assert active_span(daily, late) == (
        dt.datetime(2026, 11, 30, 23, 30, tzinfo=UTC),
        dt.datetime(2026, 12, 1, 1, 30, tzinfo=UTC),
    )
