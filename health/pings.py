"""Ping addresses (PUBLIC_URL + /ping/<uuid>), and pings that arrived by name while the database was away
(api.ping.ping_by_name): resolved at replay."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings

from health.models import Ping, Service

log = logging.getLogger("opsportal.health")


def ping_url(ping_uuid: uuid.UUID | str) -> str:
    """The whole URL a job calls: PUBLIC_URL + /ping/<uuid> (pingurl, the dashboard, /health/status for staff)."""
    return f"{settings.PUBLIC_URL.rstrip('/')}/ping/{ping_uuid}"


def ping_urls() -> dict[str, str]:
    """Every push service's ping URL by name: one query."""
    return {name: ping_url(u) for name, u in Service.objects.filter(kind="push").values_list("name", "ping_uuid")}


def replay_named(payload: dict[str, Any]) -> None:
    """core.spool handler `named_ping`: the ping for the service of that name, with its own arrival time; a
    name that no longer exists is dropped (logged), as a live ping to it would have been answered 404."""
    fields = dict(payload)
    name = fields.pop("name")
    found = Service.objects.filter(name=name).values_list("ping_uuid", flat=True).first()
    if found is None:
        log.warning("Spooled ping for %s dropped: no such service", name)
        return
    fields["service_id"] = str(found)
    Ping.objects.create(**fields)
