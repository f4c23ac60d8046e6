"""Rows for the status page tests, made with the ORM (updates as the other face would post them)."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from health.models import HourlyRollup, Incident, IncidentUpdate, Service
from status.models import StatusPage, StatusPageService
from tests.factories import ServiceFactory

# Internal detail a public page must never show: hosts, URLs, error text.
SECRET_DETAIL = "connect to db-internal-7.corp:5432 failed: FATAL password authentication failed for user ops"
SECRET_CAUSE = "postgres at 10.20.30.40 refused connection (ECONNREFUSED)"
SECRET_ERROR = "Traceback: OperationalError at https://internal.example.net/admin"


def make_page(slug: str, services: list[Service], *, display: dict[str, str] | None = None, **fields) -> StatusPage:
    page = StatusPage.objects.create(slug=slug, title=fields.pop("title", f"{slug.title()} status"), **fields)
    for i, service in enumerate(services):
        StatusPageService.objects.create(
            page=page, service=service, display_name=(display or {}).get(service.name, ""), position=i
        )
    return page


def down_service(name: str, **fields) -> Service:
    now = timezone.now()
    return ServiceFactory(
        name=name,
        status="down",
        state_type="hard",
        last_detail=SECRET_DETAIL,
        last_error=SECRET_ERROR,
        last_checked_at=now,
        status_changed_at=now,
        **fields,
    )


def open_incident(service: Service, *, updates: list[tuple[str, str, bool]] = (), **fields) -> Incident:
    incident = Incident.objects.create(
        service=service,
        opened_at=fields.pop("opened_at", timezone.now() - dt.timedelta(minutes=30)),
        cause=SECRET_CAUSE,
        last_error=SECRET_ERROR,
        **fields,
    )
    for i, (status, message, public) in enumerate(updates):
        IncidentUpdate.objects.create(
            incident=incident,
            status=status,
            message=message,
            public=public,
            created_at=incident.opened_at + dt.timedelta(minutes=5 * (i + 1)),
        )
    return incident


def day_rollups(service: Service, day: dt.date, **counts) -> None:
    """24 hourly rollups for a UTC day, each with the given counts (count defaults to up + degraded + down +
    misconfigured)."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    base = {"up": 0, "degraded": 0, "down": 0, "maintenance": 0, "maintenance_down": 0, "misconfigured": 0}
    base.update(counts)
    base.setdefault("count", base["up"] + base["degraded"] + base["down"] + base["misconfigured"])
    HourlyRollup.objects.bulk_create(
        HourlyRollup(service=service, hour=start + dt.timedelta(hours=h), **base) for h in range(24)
    )
