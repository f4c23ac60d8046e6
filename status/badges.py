"""Badges of a service's state and uptime, as SVG and as a shields.io endpoint JSON.

Only for a service listed on a public status page, or with `badge = true`: any other name (or no such
service) is a 404, so a badge URL tells nothing about services that are not meant to be public.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from health.models import Service
from health.rollups import UPTIME_WINDOWS, tallies
from status.pages import component_state

CACHE_PREFIX = "status-badge:v1:"
# state -> (message, shields colour)
STATE_BADGES = {
    "up": ("up", "brightgreen"),
    "degraded": ("degraded", "yellow"),
    "partial": ("failing", "orange"),
    "down": ("down", "red"),
    "maintenance": ("maintenance", "blue"),
    "unknown": ("unknown", "lightgrey"),
}


@dataclass(frozen=True)
class Badge:
    label: str
    message: str
    color: str

    def endpoint_json(self) -> str:
        """The shields.io endpoint schema (https://shields.io/badges/endpoint-badge)."""
        return json.dumps({"schemaVersion": 1, "label": self.label, "message": self.message, "color": self.color})

    def etag(self, kind: str) -> str:
        return hashlib.sha256(f"{kind}\0{self.label}\0{self.message}\0{self.color}".encode()).hexdigest()[:32]


def badge_service(name: str) -> Service | None:
    """The service named, when it may have a badge (badge = true, or on a public page); else None."""
    eligible = Q(badge=True) | Q(status_pages__public=True)
    return Service.objects.filter(eligible, name=name).distinct().first()


def uptime_color(percent: float) -> str:
    if percent >= 99.9:
        return "brightgreen"
    if percent >= 99.0:
        return "green"
    if percent >= 95.0:
        return "yellow"
    if percent >= 90.0:
        return "orange"
    return "red"


def compute(name: str, window: str | None, now: dt.datetime | None = None) -> Badge | None:
    """The state badge (window None) or the uptime badge over `window` (24h, 7d, 30d); None: 404."""
    service = badge_service(name)
    if service is None:
        return None
    if window is None:
        message, color = STATE_BADGES[component_state(service)]
        return Badge(service.name, message, color)
    now = now or timezone.now()
    tally = tallies([service.pk], now - UPTIME_WINDOWS[window], now + dt.timedelta(microseconds=1))[service.pk]
    if tally.uptime is None:
        return Badge(f"uptime {window}", "no data", "lightgrey")
    text = f"{tally.uptime:.2f}".rstrip("0").rstrip(".")
    return Badge(f"uptime {window}", f"{text}%", uptime_color(tally.uptime))


def get(name: str, window: str | None) -> Badge | None:
    """compute(), kept in the cache for STATUS_PAGE_CACHE_SECONDS (a refused name is not cached)."""
    ttl = settings.STATUS_PAGE_CACHE_SECONDS
    key = f"{CACHE_PREFIX}{hashlib.sha256(name.encode()).hexdigest()[:24]}:{window or 'state'}"
    if ttl > 0 and (cached := cache.get(key)) is not None:
        return cached
    found = compute(name, window)
    if found is not None and ttl > 0:
        cache.set(key, found, ttl)
    return found
