"""What a status page shows, built once and cached: a `Snapshot` of plain values the HTML page, summary.json
and the Atom feed all render from (so the three agree, and none can show more than the snapshot holds).

Only the page's own services appear, under their display names. Internal detail (probe details, incident
causes and errors, maintenance reasons, postmortems) enters the snapshot only when the page's
`show_details` is on: what is not in it cannot leak through a template, the JSON or the feed.

Cost: a constant number of queries whatever the number of services (the page, its entries, the daily
tallies, the incidents, their public updates, the maintenance windows), and the snapshot is kept in the
Django cache for STATUS_PAGE_CACHE_SECONDS (invalidation by TTL: a page is at most that stale).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Prefetch, Q
from django.utils import timezone

from health.models import DEGRADED, DOWN, HARD, UNKNOWN, UP, Incident, IncidentUpdate, MaintenanceWindow, Service
from health.probes.push import next_tick
from health.windows import active_span, parse_cron, zone
from status import uptime
from status.models import StatusPage

UTC = dt.UTC
HISTORY = dt.timedelta(days=uptime.DAYS)
# Recurring maintenance is announced this far ahead; one-off windows as soon as they are configured.
UPCOMING = dt.timedelta(days=7)
PAST_INCIDENTS_SHOWN = 100
CACHE_PREFIX = "status-page:v1:"

# A component's state on the page -> (words, Statuspage component status).
STATES = {
    UP: ("Operational", "operational"),
    DEGRADED: ("Degraded performance", "degraded_performance"),
    "partial": ("Partial outage", "partial_outage"),
    DOWN: ("Major outage", "major_outage"),
    "maintenance": ("Under maintenance", "under_maintenance"),
    # Never probed, or the probe cannot run as configured: not known to be up (as the portal's overall status).
    UNKNOWN: ("No data", "degraded_performance"),
}
# Overall: (state key, Statuspage indicator, words), worst first.
OVERALL = {
    "critical": ("down", "critical", "Major outage"),
    "major": ("partial", "major", "Partial outage"),
    "minor": ("degraded", "minor", "Degraded performance"),
    "unknown": ("unknown", "minor", "Some services have no data"),
    "maintenance": ("maintenance", "none", "Under maintenance"),
    "none": ("up", "none", "All systems operational"),
}


@dataclass
class Component:
    id: str
    name: str
    state: str
    critical: bool
    days: list[uptime.Day]
    uptime: float | None
    changed_at: dt.datetime | None
    position: int
    detail: str = ""

    @property
    def words(self) -> str:
        return STATES[self.state][0]

    @property
    def statuspage_status(self) -> str:
        return STATES[self.state][1]


@dataclass
class Update:
    id: int
    status: str
    message: str
    created_at: dt.datetime


@dataclass
class IncidentView:
    id: int
    name: str
    status: str
    impact: str
    started_at: dt.datetime
    resolved_at: dt.datetime | None
    updated_at: dt.datetime
    component_ids: list[str]
    component_names: list[str]
    updates: list[Update]
    detail: str = ""
    postmortem: str = ""

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass
class MaintenanceView:
    id: int
    status: str  # in_progress | scheduled
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    component_ids: list[str]
    component_names: list[str]
    reason: str = ""

    @property
    def name(self) -> str:
        return "Scheduled maintenance" + (f": {', '.join(self.component_names)}" if self.component_names else "")


@dataclass
class Snapshot:
    slug: str
    title: str
    description: str
    public: bool
    show_details: bool
    generated_at: dt.datetime
    updated_at: dt.datetime
    components: list[Component]
    open_incidents: list[IncidentView] = field(default_factory=list)
    past_incidents: list[IncidentView] = field(default_factory=list)
    maintenance: list[MaintenanceView] = field(default_factory=list)
    overall: str = "none"

    @property
    def state(self) -> str:
        return OVERALL[self.overall][0]

    @property
    def indicator(self) -> str:
        return OVERALL[self.overall][1]

    @property
    def words(self) -> str:
        return OVERALL[self.overall][2]

    @property
    def current_maintenance(self) -> list[MaintenanceView]:
        return [m for m in self.maintenance if m.status == "in_progress"]

    @property
    def upcoming_maintenance(self) -> list[MaintenanceView]:
        return [m for m in self.maintenance if m.status == "scheduled"]


def component_id(slug: str, service_name: str) -> str:
    """A stable id that names neither the service nor its row (a service's name may itself be internal)."""
    return hashlib.sha256(f"opsportal-status:{slug}:{service_name}".encode()).hexdigest()[:16]


def component_state(service: Service) -> str:
    if service.is_paused:
        return "maintenance"
    if service.status == UP:
        return UP
    if service.status == DEGRADED:
        return DEGRADED
    if service.status == DOWN:
        # SOFT: one failure not yet confirmed; HARD: confirmed (an incident is open).
        return DOWN if service.state_type == HARD else "partial"
    return UNKNOWN


def overall(components: list[Component]) -> str:
    states = [c.state for c in components]
    if any(c.state == DOWN and c.critical for c in components):
        return "critical"
    if DOWN in states or "partial" in states:
        return "major"
    if DEGRADED in states:
        return "minor"
    if UNKNOWN in states:
        return "unknown"
    if "maintenance" in states:
        return "maintenance"
    return "none"


def incident_name(name: str, incident: Incident) -> str:
    return f"{name} degraded" if incident.severity == Incident.Severity.WARNING else f"{name} outage"


def next_start(window: MaintenanceWindow, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The next (start, end) of a window after `now`, within UPCOMING for a recurring one."""
    if window.starts_at is not None and window.ends_at is not None:
        return (window.starts_at, window.ends_at) if window.starts_at > now else None
    length = dt.timedelta(minutes=window.duration)
    tz = zone(window.timezone)
    if window.cron:
        start = next_tick(parse_cron(window.cron), tz, now)
        return (start, start + length) if start is not None and start - now <= UPCOMING else None
    if window.start_time is None:
        return None
    local_today = now.astimezone(tz).date()
    for ahead in range(UPCOMING.days + 1):
        day = local_today + dt.timedelta(days=ahead)
        if window.weekdays and day.weekday() not in window.weekdays:
            continue
        start = dt.datetime.combine(day, window.start_time, tzinfo=tz).astimezone(UTC)
        if start > now:
            return start, start + length
    return None


def build(page: StatusPage, now: dt.datetime | None = None) -> Snapshot:
    """The snapshot of one page, read from the database (see the module docstring for what it may hold)."""
    now = now or timezone.now()
    entries = list(page.entries.select_related("service").order_by("position", "pk"))
    services = [e.service for e in entries]
    ids = [s.pk for s in services]
    names = {e.service_id: e.shown_name for e in entries}
    cids = {e.service_id: component_id(page.slug, e.service.name) for e in entries}
    daily = uptime.daily_tallies(ids, now) if ids else {}
    components = [
        Component(
            id=cids[s.pk],
            name=names[s.pk],
            state=component_state(s),
            critical=s.critical,
            days=uptime.bar(daily.get(s.pk, {}), now),
            uptime=uptime.total(daily.get(s.pk, {})),
            changed_at=s.status_changed_at,
            position=i,
            detail=(s.last_detail if page.show_details else ""),
        )
        for i, s in enumerate(services)
    ]
    snapshot = Snapshot(
        slug=page.slug,
        title=page.title,
        description=page.description,
        public=page.public,
        show_details=page.show_details,
        generated_at=now,
        updated_at=max([page.updated_at, *(c.changed_at for c in components if c.changed_at)]),
        components=components,
        overall=overall(components),
    )
    if not ids:
        return snapshot
    since = now - HISTORY
    incidents = (
        Incident.objects.filter(service_id__in=ids)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=since))
        .prefetch_related(
            Prefetch("updates", queryset=IncidentUpdate.objects.filter(public=True).order_by("created_at", "pk"))
        )
        # Open ones first (never cut off by the limit), then the most recently resolved.
        .order_by(F("resolved_at").desc(nulls_first=True), "-opened_at", "-pk")[: PAST_INCIDENTS_SHOWN + len(ids)]
    )
    for incident in incidents:
        view = incident_view(incident, names[incident.service_id], cids[incident.service_id], page.show_details)
        (snapshot.open_incidents if view.is_open else snapshot.past_incidents).append(view)
    snapshot.open_incidents.sort(key=lambda i: (i.started_at, i.id), reverse=True)
    snapshot.past_incidents.sort(key=lambda i: (i.started_at, i.id), reverse=True)
    del snapshot.past_incidents[PAST_INCIDENTS_SHOWN:]
    windows = MaintenanceWindow.objects.filter(enabled=True).filter(Q(service__isnull=True) | Q(service_id__in=ids))
    for window in windows.order_by("pk"):
        affected = [window.service_id] if window.service_id else ids
        common = {
            "id": window.pk,
            "component_ids": [cids[i] for i in affected],
            "component_names": [names[i] for i in affected],
            "reason": window.reason if page.show_details else "",
        }
        if (span := active_span(window, now)) is not None:
            start, end = span
            snapshot.maintenance.append(MaintenanceView(status="in_progress", starts_at=start, ends_at=end, **common))
        elif (upcoming := next_start(window, now)) is not None:
            start, end = upcoming
            snapshot.maintenance.append(MaintenanceView(status="scheduled", starts_at=start, ends_at=end, **common))
    snapshot.maintenance.sort(key=lambda m: (m.status != "in_progress", m.starts_at or now))
    return snapshot


def incident_view(incident: Incident, name: str, cid: str, show_details: bool) -> IncidentView:
    updates = [Update(u.pk, u.status, u.message, u.created_at) for u in incident.updates.all()]
    if incident.resolved_at is not None:
        status = IncidentUpdate.Status.RESOLVED
    elif updates:
        status = updates[-1].status
    else:
        status = IncidentUpdate.Status.INVESTIGATING
    times = [incident.opened_at, incident.resolved_at, *(u.created_at for u in updates)]
    return IncidentView(
        id=incident.pk,
        name=incident_name(name, incident),
        status=str(status),
        impact="minor" if incident.severity == Incident.Severity.WARNING else "major",
        started_at=incident.opened_at,
        resolved_at=incident.resolved_at,
        updated_at=max(t for t in times if t is not None),
        component_ids=[cid],
        component_names=[name],
        updates=updates,
        detail=" — ".join(filter(None, (incident.cause, incident.last_error))) if show_details else "",
        postmortem=incident.postmortem if show_details and incident.resolved_at else "",
    )


def cache_key(slug: str) -> str:
    return CACHE_PREFIX + slug


def snapshot(slug: str) -> Snapshot | None:
    """The cached snapshot of the page `slug`, built on a miss; None when there is no such page."""
    ttl = settings.STATUS_PAGE_CACHE_SECONDS
    if ttl > 0:
        cached = cache.get(cache_key(slug))
        if cached is not None:
            return cached
    page = StatusPage.objects.filter(slug=slug).first()
    if page is None:
        return None
    built = build(page)
    if ttl > 0:
        cache.set(cache_key(slug), built, ttl)
    return built
