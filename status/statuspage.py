"""summary.json in the shape of Atlassian Statuspage's /api/v2/summary.json, so its existing readers (status
aggregators, chat integrations, `statuspage` clients) read a portal page unchanged.

Made from the page's Snapshot only (status.pages), so it holds no more than the HTML page shows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from status.pages import Component, IncidentView, MaintenanceView, Snapshot

TIME_ZONE = "Etc/UTC"


def when(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if moment else None


def component(c: Component, snap: Snapshot) -> dict[str, Any]:
    stamp = when(c.changed_at or snap.updated_at)
    return {
        "id": c.id,
        "name": c.name,
        "status": c.statuspage_status,
        "created_at": stamp,
        "updated_at": stamp,
        "position": c.position + 1,
        "description": c.detail or None,
        "showcase": True,
        "start_date": None,
        "group_id": None,
        "page_id": snap.slug,
        "group": False,
        "only_show_if_degraded": False,
    }


def incident(i: IncidentView, snap: Snapshot, url: str, by_id: dict[str, Component]) -> dict[str, Any]:
    components = [component(by_id[cid], snap) for cid in i.component_ids if cid in by_id]
    affected = [
        {"code": c["id"], "name": c["name"], "old_status": "operational", "new_status": c["status"]} for c in components
    ]
    updates = [
        {
            "id": str(u.id),
            "status": u.status,
            "body": u.message,
            "incident_id": str(i.id),
            "created_at": when(u.created_at),
            "updated_at": when(u.created_at),
            "display_at": when(u.created_at),
            "affected_components": affected,
        }
        for u in reversed(i.updates)  # newest first, as Statuspage lists them
    ]
    return {
        "id": str(i.id),
        "name": i.name,
        "status": i.status,
        "created_at": when(i.started_at),
        "updated_at": when(i.updated_at),
        "monitoring_at": when(next((u.created_at for u in i.updates if u.status == "monitoring"), None)),
        "resolved_at": when(i.resolved_at),
        "impact": i.impact,
        "shortlink": f"{url}#incident-{i.id}",
        "started_at": when(i.started_at),
        "page_id": snap.slug,
        "incident_updates": updates,
        "components": components,
    }


def maintenance(m: MaintenanceView, snap: Snapshot, url: str, by_id: dict[str, Component]) -> dict[str, Any]:
    return {
        "id": f"maintenance-{m.id}",
        "name": m.name,
        "status": m.status,
        "created_at": when(m.starts_at),
        "updated_at": when(m.starts_at),
        "monitoring_at": None,
        "resolved_at": None,
        "impact": "maintenance",
        "shortlink": f"{url}#maintenance-{m.id}",
        "started_at": when(m.starts_at),
        "page_id": snap.slug,
        "incident_updates": [],
        "components": [component(by_id[cid], snap) for cid in m.component_ids if cid in by_id],
        "scheduled_for": when(m.starts_at),
        "scheduled_until": when(m.ends_at),
    }


def summary(snap: Snapshot, url: str) -> dict[str, Any]:
    """The whole document; `url` is the page's absolute address."""
    by_id = {c.id: c for c in snap.components}
    return {
        "page": {
            "id": snap.slug,
            "name": snap.title,
            "url": url,
            "time_zone": TIME_ZONE,
            "updated_at": when(snap.updated_at),
        },
        "status": {"indicator": snap.indicator, "description": snap.words},
        "components": [component(c, snap) for c in snap.components],
        "incidents": [incident(i, snap, url, by_id) for i in snap.open_incidents],
        "scheduled_maintenances": [maintenance(m, snap, url, by_id) for m in snap.maintenance],
    }
