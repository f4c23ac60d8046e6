"""Maintenance windows: one-off and recurring (cron or weekday + time) in a time zone, across DST;
during a window results are stored but there is no incident, no notification and no auto-recovery."""

from __future__ import annotations

import datetime as dt
import sys

import pytest
from django.utils import timezone

from configfile.config import export_text, import_text
from core.spec import ConfigError
from dispatch import rounds
from health.models import Event, Incident, MaintenanceWindow, ProbeResult, Service
from health.probes.base import DOWN, ProbeOutcome
from health.runner import record
from health.windows import parse_cron, window_active
from notify import outbox as notify
from notify.models import Channel
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.factories import ServiceFactory
from tests.servers import Reply

pytestmark = pytest.mark.django_db
UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# Europe/Berlin leaves CET (+1) for CEST (+2) at 2026-03-29 01:00 UTC.
@pytest.mark.parametrize(
    "window",
    [
        {"cron": "0 3 * * *"},
        {"start_time": dt.time(3, 0)},
        {"start_time": dt.time(3, 0), "weekdays": [5, 6]},
    ],
)
def test_it_follows_local_time_across_the_spring_dst_change(window):
    w = MaintenanceWindow(name="nightly", duration=60, timezone="Europe/Berlin", **window)
    # Saturday 28 March: 03:00 CET is 02:00 UTC.
    assert window_active(w, utc(2026, 3, 28, 2, 30))
    assert not window_active(w, utc(2026, 3, 28, 1, 30))
    # Sunday 29 March: 03:00 CEST is 01:00 UTC — one hour earlier in UTC.
    assert window_active(w, utc(2026, 3, 29, 1, 30))
    assert not window_active(w, utc(2026, 3, 29, 2, 30))
    # Autumn back to CET: Sunday 25 October 03:00 CET is 02:00 UTC again.
    assert window_active(w, utc(2026, 10, 25, 2, 30))
    assert not window_active(w, utc(2026, 10, 25, 1, 30))


def test_it_ends_a_window_after_its_duration_and_honours_weekdays():
    w = MaintenanceWindow(name="w", start_time=dt.time(23, 30), duration=90, weekdays=[4], timezone="UTC")
    assert window_active(w, utc(2026, 3, 27, 23, 45))  # Friday 23:45
    assert window_active(w, utc(2026, 3, 28, 0, 59))  # still, after midnight
    assert not window_active(w, utc(2026, 3, 28, 1, 0))
    assert not window_active(w, utc(2026, 3, 26, 23, 45))  # Thursday


def test_it_keeps_a_one_off_window_half_open():
    w = MaintenanceWindow(name="w", starts_at=utc(2026, 5, 1, 10), ends_at=utc(2026, 5, 1, 12))
    assert not window_active(w, utc(2026, 5, 1, 9, 59))
    assert window_active(w, utc(2026, 5, 1, 10))
    assert not window_active(w, utc(2026, 5, 1, 12))
    w.enabled = False
    assert not window_active(w, utc(2026, 5, 1, 11))


def test_it_parses_cron_fields():
    minute, hour, day, month, weekday = parse_cron("*/15 1-3 * * 7")
    assert minute == {0, 15, 30, 45} and hour == {1, 2, 3} and weekday == {0}
    with pytest.raises(ConfigError, match="five fields"):
        parse_cron("0 3 * *")
    with pytest.raises(ConfigError, match="hour field '25' must lie within 0-23"):
        parse_cron("0 25 * * *")


def failing_service_in_window(tmp_path, **window):
    """A critical http service that fails, with an auto recovery action that would leave a marker file."""
    service = ServiceFactory(name="api", failure_threshold=1)
    marker = tmp_path / "recovered"
    RecoveryAction.objects.create(
        service=service,
        kind="command",
        settings={"argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]},
        verify_delay=0,
        cooldown=0,
    )
    MaintenanceWindow.objects.create(name="upgrade", service=service, **window)
    return service, marker


def test_it_stores_results_but_opens_no_incident_sends_nothing_and_does_not_recover(http_server, settings, tmp_path):
    settings.AUTO_RECOVERY_ENABLED = True
    Channel.objects.create(name="ops", url=f"json://127.0.0.1:{http_server.port}/hook")
    now = timezone.now()
    service, marker = failing_service_in_window(
        tmp_path, starts_at=now - dt.timedelta(minutes=5), ends_at=now + dt.timedelta(hours=1)
    )
    service.kind, service.settings = "http", {"url": http_server.url + "/svc"}
    service.save()
    http_server.routes["/svc"] = Reply(status=500)
    for _ in range(3):
        result = rounds.run([Service.objects.get(pk=service.pk)])
        notify.process_outbox()
    service.refresh_from_db()
    assert ProbeResult.objects.filter(service=service, status=DOWN).count() == 3
    assert service.status == "paused" and service.in_maintenance
    assert service.status_dict()["maintenance"] is True
    assert result.status == "healthy"  # a paused service does not count
    assert not Incident.objects.exists()
    assert not Event.objects.exists()
    assert [r for r in http_server.requests if r["path"] == "/hook"] == []
    assert not RecoveryAttempt.objects.exists()
    assert not marker.exists()


def test_it_alerts_again_once_a_recurring_window_has_ended(tmp_path, settings):
    settings.AUTO_RECOVERY_ENABLED = False
    service, _ = failing_service_in_window(tmp_path, cron="0 3 * * *", duration=60, timezone="Europe/Berlin")
    down = {"api": ProbeOutcome(DOWN, 1.0, "connection refused")}
    # 03:30 CEST on the DST Sunday is 01:30 UTC: inside the window.
    record([Service.objects.get(pk=service.pk)], down, utc(2026, 3, 29, 1, 30))
    assert not Incident.objects.exists()
    assert Service.objects.get(pk=service.pk).status == "paused"
    # 02:30 UTC is 04:30 CEST: the window is over (a fixed-UTC reading would still pause it).
    record([Service.objects.get(pk=service.pk)], down, utc(2026, 3, 29, 2, 30))
    assert Incident.objects.filter(service=service, resolved_at__isnull=True).count() == 1
    assert ProbeResult.objects.filter(service=service).count() == 2


def test_it_pauses_every_service_for_a_global_window():
    a, b = ServiceFactory(name="a"), ServiceFactory(name="b")
    now = timezone.now()
    MaintenanceWindow.objects.create(name="all", starts_at=now - dt.timedelta(minutes=1), ends_at=now + dt.timedelta(1))
    record([a, b], {"a": ProbeOutcome(DOWN, 1.0, "x"), "b": ProbeOutcome(DOWN, 1.0, "x")}, now)
    assert set(Service.objects.values_list("status", flat=True)) == {"paused"}


def test_it_imports_and_exports_maintenance_tables():
    ServiceFactory(name="backend")
    text = """
[[maintenance]]
name = "nightly-backup"
service = "backend"
cron = "0 3 * * *"
duration = 30
timezone = "Europe/Berlin"

[[maintenance]]
name = "sunday"
weekdays = [6]
start_time = 02:00:00

[[maintenance]]
name = "migration"
starts_at = 2026-05-01T10:00:00+02:00
ends_at = 2026-05-01T12:00:00+02:00
"""
    report = import_text(text)
    assert sorted(report.maintenance.created) == ["migration", "nightly-backup", "sunday"]
    nightly = MaintenanceWindow.objects.get(name="nightly-backup")
    assert (nightly.service.name, nightly.cron, nightly.duration) == ("backend", "0 3 * * *", 30)
    assert MaintenanceWindow.objects.get(name="migration").starts_at == utc(2026, 5, 1, 8)
    sunday = MaintenanceWindow.objects.get(name="sunday")
    assert (sunday.service, sunday.weekdays, sunday.start_time) == (None, [6], dt.time(2, 0))
    again = import_text(export_text())
    assert sorted(again.maintenance.unchanged) == ["migration", "nightly-backup", "sunday"]


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('cron = "0 3 * *"', "maintenance[0].cron: must have five fields"),
        ('cron = "0 3 * * *"\ntimezone = "Mars/Olympus"', "maintenance[0].timezone: unknown time zone"),
        ("start_time = 03:00:00\nweekdays = [7]", "maintenance[0].weekdays: must be a list of 0"),
        ("starts_at = 2026-05-01T10:00:00Z\nends_at = 2026-05-01T09:00:00Z", "maintenance[0].ends_at: must be after"),
        ('starts_at = "tomorrow"\nends_at = 2026-05-01T09:00:00Z', "maintenance[0].starts_at: must be a TOML date"),
        ("duration = 30", "maintenance[0].starts_at: give either"),
        ('cron = "0 3 * * *"\nservice = "ghost"', "maintenance[0].service: unknown service 'ghost'"),
        ('cron = "0 3 * * *"\nduration = 0', "maintenance[0].duration: must be a positive integer"),
    ],
)
def test_it_refuses_a_bad_maintenance_table_and_changes_nothing(table, error):
    with pytest.raises(ConfigError) as exc:
        import_text(f'[[maintenance]]\nname = "w"\n{table}\n')
    assert str(exc.value).startswith(error), str(exc.value)
    assert not MaintenanceWindow.objects.exists()


def test_it_validates_a_window_in_the_admin_form(admin_client):
    answer = admin_client.post(
        "/admin/health/maintenancewindow/add/",
        {"name": "bad", "cron": "99 * * * *", "weekdays": "[]", "duration": 60, "timezone": "UTC", "enabled": "on"},
    )
    assert answer.status_code == 200
    assert "minute field" in answer.content.decode()
    assert not MaintenanceWindow.objects.exists()
