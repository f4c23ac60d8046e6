"""The Atom feed of a page's incidents and their public updates (one entry an incident, updated with each)."""

from __future__ import annotations

from django.utils.feedgenerator import Atom1Feed
from django.utils.html import escape

from status.pages import IncidentView, Snapshot


def _entry_html(incident: IncidentView) -> str:
    lines = [
        f"<p><strong>{escape(u.status.capitalize())}</strong> ({u.created_at:%Y-%m-%d %H:%M} UTC): "
        f"{escape(u.message)}</p>"
        for u in reversed(incident.updates)
    ]
    affected = escape(", ".join(incident.component_names))
    lines.append(f"<p>Affected: {affected}. Started {incident.started_at:%Y-%m-%d %H:%M} UTC.</p>")
    if incident.resolved_at:
        lines.insert(0, f"<p>Resolved {incident.resolved_at:%Y-%m-%d %H:%M} UTC.</p>")
    if incident.detail:
        lines.append(f"<p>Detail: {escape(incident.detail)}</p>")
    return "".join(lines)


def feed(snap: Snapshot, url: str, feed_url: str) -> Atom1Feed:
    out = Atom1Feed(
        title=f"{snap.title}: incidents",
        link=url,
        description=snap.description or f"Incidents and updates of {snap.title}",
        feed_url=feed_url,
        feed_guid=feed_url,
        language="en",
    )
    for incident in sorted(
        [*snap.open_incidents, *snap.past_incidents], key=lambda i: (i.updated_at, i.id), reverse=True
    ):
        state = "resolved" if incident.resolved_at else incident.status
        out.add_item(
            title=f"{incident.name} ({state})",
            link=f"{url}#incident-{incident.id}",
            unique_id=f"{url}#incident-{incident.id}",
            description=_entry_html(incident),
            pubdate=incident.started_at,
            updateddate=incident.updated_at,
        )
    return out
