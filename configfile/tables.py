"""The `[[channel]]`, `[[maintenance]]` and `[[status_page]]` tables of the TOML config (configfile.config calls these).

```toml
[[channel]]
name = "ops-slack"
url = "${SLACK_URL}"             # an apprise URL; secrets only as ${VAR}, expanded at send time
events = ["incident_opened", "incident_resolved"]   # default: all
services = ["backend"]           # default: all
remind_every = 3600              # seconds; default 0 (off)

[[maintenance]]
name = "nightly-backup"
service = "backend"              # default: every service
cron = "0 3 * * *"               # or: weekdays = [6], start_time = 03:00:00; or starts_at/ends_at
duration = 30                    # minutes
timezone = "Europe/Berlin"

[[status_page]]
slug = "public"                  # served at /status/public/
title = "Example status"
services = ["backend", "web"]    # in the order shown; only these appear on the page
display_names = {backend = "API"}
hostname = "status.example.com"  # optional: / on this Host (it must be in ALLOWED_HOSTS too)
show_details = false             # true shows probe details and incident causes: internal detail
public = true                    # false: logged-in users only
```
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from configfile.upsert import Item, upsert
from core.spec import ConfigError, validate
from health.models import Event, MaintenanceWindow, Service
from health.spec import MAINTENANCE_KEYS
from health.windows import validate_window, zone
from notify.models import Channel
from notify.spec import CHANNEL_KEYS
from status.models import StatusPage, StatusPageService
from status.spec import HOSTNAME_PATTERN, STATUS_PAGE_KEYS

# TOML dates and times, checked by hand (the key specs know no date type).
WHEN_KEYS = ("starts_at", "ends_at", "start_time")


def _names(tables: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(tables, list):
        raise ConfigError(what, f"must be an array of tables ([[{what}]])")
    return tables


def parse_channels(tables: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, table in enumerate(_names(tables, "channel")):
        where = f"channel[{i}]"
        cleaned = validate(CHANNEL_KEYS, table, where)
        for kind in cleaned.get("events", []):
            if kind not in Event.Kind.values:
                raise ConfigError(f"{where}.events", f"unknown event {kind!r} (one of {', '.join(Event.Kind.values)})")
        if len(cleaned["url"]) > Channel._meta.get_field("url").max_length:
            raise ConfigError(f"{where}.url", "must be at most 1000 characters")
        if any(c["name"] == cleaned["name"] for c in out):
            raise ConfigError(f"{where}.name", f"duplicate name {cleaned['name']!r}")
        out.append(cleaned)
    return out


def _when(value: Any, where: str, tz: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone(tz))
    raise ConfigError(where, "must be a TOML date-time (2026-03-29T02:00:00+02:00)")


def parse_maintenance(tables: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, table in enumerate(_names(tables, "maintenance")):
        where = f"maintenance[{i}]"
        cleaned = validate(MAINTENANCE_KEYS, table, where, ignore=WHEN_KEYS)
        tz = cleaned.get("timezone", "UTC")
        try:
            zone(tz)
        except ConfigError as exc:
            raise ConfigError(f"{where}.timezone", exc.message) from None
        for key in ("starts_at", "ends_at"):
            if key in table:
                cleaned[key] = _when(table[key], f"{where}.{key}", tz)
        if "start_time" in table:
            value = table["start_time"]
            if not isinstance(value, dt.time) or value.tzinfo is not None:
                raise ConfigError(f"{where}.start_time", "must be a TOML local time (03:00:00)")
            cleaned["start_time"] = value
        try:
            validate_window(MaintenanceWindow(**_window_values(cleaned)))
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc.where}", exc.message) from None
        if any(m["name"] == cleaned["name"] for m in out):
            raise ConfigError(f"{where}.name", f"duplicate name {cleaned['name']!r}")
        out.append(cleaned)
    return out


def check_references(channels: list[dict], windows: list[dict], names: set[str], *, prune: bool) -> None:
    """Services named by channels and windows must be in the file (or, without --prune, in the database)."""

    def known(name: str) -> bool:
        return name in names or (not prune and Service.objects.filter(name=name).exists())

    for i, channel in enumerate(channels):
        for name in channel.get("services", []):
            if not known(name):
                raise ConfigError(f"channel[{i}].services", f"unknown service {name!r}")
    for i, window in enumerate(windows):
        if window.get("service") and not known(window["service"]):
            raise ConfigError(f"maintenance[{i}].service", f"unknown service {window['service']!r}")


def _window_values(cleaned: dict[str, Any]) -> dict[str, Any]:
    return {
        "cron": cleaned.get("cron", ""),
        "weekdays": cleaned.get("weekdays", []),
        "start_time": cleaned.get("start_time"),
        "starts_at": cleaned.get("starts_at"),
        "ends_at": cleaned.get("ends_at"),
        "duration": cleaned.get("duration", 60),
        "timezone": cleaned.get("timezone", "UTC"),
        "enabled": cleaned.get("enabled", True),
        "reason": cleaned.get("reason", ""),
    }


def apply_channels(channels: list[dict[str, Any]], prune: bool, changes: Any) -> None:
    wanted = {c["name"]: sorted(c.get("services", [])) for c in channels}
    rows, _ = upsert(
        Channel,
        [
            Item(
                table["name"],
                {k: table.get(k, CHANNEL_KEYS[k].default) for k in ("url", "events", "remind_every", "enabled")},
                lambda row: sorted(s.name for s in row.services.all()) != wanted[row.name],
            )
            for table in channels
        ],
        changes,
        prune=prune,
        existing=Channel.objects.prefetch_related("services"),
    )
    for name, row in rows.items():
        row.services.set(Service.objects.filter(name__in=wanted[name]))


def apply_maintenance(windows: list[dict[str, Any]], prune: bool, changes: Any) -> None:
    items = []
    for table in windows:
        values = _window_values(table)
        values["service"] = Service.objects.get(name=table["service"]) if table.get("service") else None
        items.append(Item(table["name"], values))
    upsert(MaintenanceWindow, items, changes, prune=prune, existing=MaintenanceWindow.objects.select_related("service"))


def export_channels() -> list[dict[str, Any]]:
    out = []
    for c in Channel.objects.prefetch_related("services").order_by("name"):
        table: dict[str, Any] = {"name": c.name, "url": c.url}  # the URL as written: secrets stay ${VAR}
        if c.events:
            table["events"] = list(c.events)
        services = sorted(s.name for s in c.services.all())
        if services:
            table["services"] = services
        if c.remind_every:
            table["remind_every"] = c.remind_every
        if not c.enabled:
            table["enabled"] = False
        out.append(table)
    return out


def export_maintenance() -> list[dict[str, Any]]:
    out = []
    for w in MaintenanceWindow.objects.select_related("service").order_by("name"):
        table: dict[str, Any] = {"name": w.name}
        if w.service:
            table["service"] = w.service.name
        if w.starts_at:
            table["starts_at"], table["ends_at"] = w.starts_at, w.ends_at
        else:
            if w.cron:
                table["cron"] = w.cron
            else:
                table["start_time"] = w.start_time
                if w.weekdays:
                    table["weekdays"] = list(w.weekdays)
            table["duration"] = w.duration
        if w.timezone != "UTC":
            table["timezone"] = w.timezone
        if not w.enabled:
            table["enabled"] = False
        if w.reason:
            table["reason"] = w.reason
        out.append(table)
    return out


# --- [[status_page]] ---
def parse_status_pages(tables: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, table in enumerate(_names(tables, "status_page")):
        where = f"status_page[{i}]"
        cleaned = validate(STATUS_PAGE_KEYS, table, where)
        if len(cleaned["title"]) > StatusPage._meta.get_field("title").max_length:
            raise ConfigError(f"{where}.title", "must be at most 200 characters")
        hostname = cleaned.get("hostname", "")
        if hostname and (len(hostname) > 253 or not re.fullmatch(HOSTNAME_PATTERN, hostname)):
            raise ConfigError(
                f"{where}.hostname", "must be a host name (lowercase letters, digits, '-' and '.', no port)"
            )
        services = cleaned.get("services", [])
        if len(set(services)) != len(services):
            raise ConfigError(f"{where}.services", "names a service twice")
        for name, shown in cleaned.get("display_names", {}).items():
            if name not in services:
                raise ConfigError(f"{where}.display_names", f"{name!r} is not in this page's services")
            if not shown or len(shown) > StatusPageService._meta.get_field("display_name").max_length:
                raise ConfigError(f"{where}.display_names.{name}", "must be 1 to 200 characters")
        for earlier in out:
            if earlier["slug"] == cleaned["slug"]:
                raise ConfigError(f"{where}.slug", f"duplicate slug {cleaned['slug']!r}")
            if hostname and earlier.get("hostname") == hostname:
                raise ConfigError(f"{where}.hostname", f"duplicate hostname {hostname!r}")
        out.append(cleaned)
    return out


def check_status_page_references(pages: list[dict], names: set[str], *, prune: bool) -> None:
    """A page lists only services in the file (or, without --prune, in the database)."""
    wanted = {name for page in pages for name in page.get("services", [])}
    existing = set() if prune else set(Service.objects.filter(name__in=wanted - names).values_list("name", flat=True))
    for i, page in enumerate(pages):
        for name in page.get("services", []):
            if name not in names and name not in existing:
                raise ConfigError(f"status_page[{i}].services", f"unknown service {name!r}")


def _entries(table: dict[str, Any]) -> list[tuple[str, str]]:
    shown = table.get("display_names", {})
    return [(name, shown.get(name, "")) for name in table.get("services", [])]


def apply_status_pages(pages: list[dict[str, Any]], prune: bool, changes: Any) -> None:
    wanted = {p["slug"]: _entries(p) for p in pages}

    def entries(row: StatusPage) -> list[tuple[str, str]]:
        return [(e.service.name, e.display_name) for e in row.entries.all()]

    rows, touched = upsert(
        StatusPage,
        [
            Item(
                table["slug"],
                {k: table.get(k, STATUS_PAGE_KEYS[k].default) for k in STATUS_PAGE_FIELDS},
                lambda row: entries(row) != wanted[row.slug],
            )
            for table in pages
        ],
        changes,
        prune=prune,
        existing=StatusPage.objects.prefetch_related("entries__service"),
        key="slug",
    )
    for slug in touched:
        page = rows[slug]
        page.entries.all().delete()
        services = {s.name: s for s in Service.objects.filter(name__in=[n for n, _ in wanted[slug]])}
        StatusPageService.objects.bulk_create(
            StatusPageService(page=page, service=services[name], display_name=shown, position=i)
            for i, (name, shown) in enumerate(wanted[slug])
        )


STATUS_PAGE_FIELDS = ("title", "description", "hostname", "show_details", "public")


def export_status_pages() -> list[dict[str, Any]]:
    out = []
    for page in StatusPage.objects.prefetch_related("entries__service").order_by("slug"):
        table: dict[str, Any] = {"slug": page.slug, "title": page.title}
        if page.description:
            table["description"] = page.description
        entries = list(page.entries.all())
        if entries:
            table["services"] = [e.service.name for e in entries]
        shown = {e.service.name: e.display_name for e in entries if e.display_name}
        if shown:
            table["display_names"] = shown
        if page.hostname:
            table["hostname"] = page.hostname
        if page.show_details:
            table["show_details"] = True
        if not page.public:
            table["public"] = False
        out.append(table)
    return out
