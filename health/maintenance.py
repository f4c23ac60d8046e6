"""Maintenance windows: while one is open a service is `paused` — probed and stored, but no incident,
no notification and no auto-recovery (Service.is_paused covers all three). Its results are flagged
`ProbeResult.maintenance` as they are written and left out of uptime (health.rollups.tallies).

A window is one-off (`starts_at` … `ends_at`) or recurring, either a cron expression or weekdays +
`start_time`, lasting `duration` minutes, read in the window's own time zone (zoneinfo). Recurring
starts are local wall-clock times, so "03:00 Europe/Berlin" is 02:00 UTC in winter and 01:00 UTC in
summer; the duration is elapsed time. A cron start that does not exist on a spring-forward day is
skipped, as cron does; a weekday+time start that does not exist then begins an hour later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import Q

from health.models import MaintenanceWindow, Service
from health.windows import window_active


def active_windows(services: Iterable[Service], now: dt.datetime) -> list[MaintenanceWindow]:
    """The open windows that concern these services (global ones included), in one query."""
    ids = [s.pk for s in services]
    rows = MaintenanceWindow.objects.filter(enabled=True).filter(Q(service__isnull=True) | Q(service_id__in=ids))
    return [w for w in rows if window_active(w, now)]


def apply(services: list[Service], now: dt.datetime) -> None:
    """Set each service's `in_maintenance` for this moment (the caller saves it with the state)."""
    windows = active_windows(services, now)
    is_global = any(w.service_id is None for w in windows)
    covered = {w.service_id for w in windows}
    for service in services:
        service.in_maintenance = is_global or service.pk in covered
