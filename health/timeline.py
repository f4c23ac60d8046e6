"""An incident's timeline: every event of it in order, read from the rows that already record them.

Nothing is copied for the timeline: the state changes, the incident's own fields, its updates, the outbox
events with their deliveries and the recovery attempts are the record; this module only reads them. health
cannot import the apps above it, so each app that keeps rows about an incident registers a *source* here
(notify and recovery do in their `AppConfig.ready()`), and `build()` asks each source once: one or two
queries a source, however many rows.

Most rows name the incident (an Event's `data["incident"]`, an IncidentUpdate's foreign key); the rest are
matched by service and time: the `Span` of an incident runs from the first failure of the streak that
opened it (its SOFT state change) to its resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max, Min, Q
from django.utils import timezone

from core.mask import mask
from health.models import HARD, SOFT, Event, Incident, IncidentUpdate, StateChange
from health.probes.base import DOWN

# Kinds of entry (the JSON's `kind`); notify and recovery use theirs.
STATE_CHANGE = "state_change"
OPENED = "opened"
ACKNOWLEDGED = "acknowledged"
ESCALATED = "escalated"
UPDATE = "update"
RESOLVED = "resolved"
POSTMORTEM = "postmortem"
NOTIFICATION = "notification"
RECOVERY = "recovery"

# Entries at the same instant: the state change that caused a thing first, what it told people last
# (the runner writes a HARD change, the incident and its event with one timestamp).
_RANK = {STATE_CHANGE: 0, OPENED: 1, RESOLVED: 2, ACKNOWLEDGED: 3, ESCALATED: 3, UPDATE: 3, RECOVERY: 4}
_RANK_OTHER = 5


@dataclass(frozen=True)
class TimelineEntry:
    """One event of an incident. `data` holds what a reader may want beyond the words (JSON-safe); `private`
    names the keys of it only an operator reads (what a repair printed, the evidence: log tails, processes)."""

    at: datetime
    kind: str
    title: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    private: frozenset[str] = frozenset()

    def as_dict(self, *, operator: bool = True) -> dict[str, Any]:
        """The JSON entry; without `operator` (an anonymous read while HEALTH_PUBLIC) the private keys are left
        out and named in `withheld`."""
        data = self.data
        if not operator and self.private & set(data):
            data = {k: v for k, v in data.items() if k not in self.private}
            data["withheld"] = sorted(self.private & set(self.data))
        return {"at": self.at.isoformat(), "kind": self.kind, "title": self.title, "detail": self.detail, "data": data}


@dataclass(frozen=True)
class Span:
    """The stretch of time rows without a link to the incident are matched by (always with its service).

    `start`: the first failure of the streak that opened it (the SOFT change; `opened_at` for an incident a
    person declared); `end`: its resolution, or now while open; `until`: the service's next failure streak,
    or RECOVERY_STALE_AFTER past the end, or now, whichever comes first: a follow-up written after the end (a
    recovery's event, after the re-probe that resolved it) still belongs to this incident.
    """

    incident: Incident
    start: datetime
    end: datetime
    until: datetime

    @property
    def service_id(self) -> int:
        return self.incident.service_id


Source = Callable[[Span], Iterable[TimelineEntry]]
_sources: list[Source] = []


def register(source: Source) -> Source:
    """Add a source (once; usable as a decorator). Called at import by health, in ready() by the apps above."""
    if source not in _sources:
        _sources.append(source)
    return source


def span(incident: Incident, now: datetime | None = None) -> Span:
    """The incident's span: one query (aggregates over the service's state changes)."""
    now = now or timezone.now()
    end = incident.resolved_at or now
    # A change into `down` from anything else starts a failure streak; a change to anything else ends one.
    streak = Q(new_status=DOWN) & ~Q(old_status=DOWN)
    before = Q(created_at__lte=incident.opened_at)
    found = StateChange.objects.filter(service_id=incident.service_id).aggregate(
        start=Max("created_at", filter=streak & before),
        ended=Max("created_at", filter=~Q(new_status=DOWN) & before),
        after=Min("created_at", filter=streak & Q(created_at__gt=end)),
    )
    start = found["start"]
    if start is None or incident.declared_by_id is not None or (found["ended"] or start) > start:
        start = incident.opened_at  # declared by a person, or no streak of its own on record: from its opening
    # A follow-up comes at most as late as an attempt may run: one running longer is abandoned (recovery.engine).
    latest = end + timedelta(seconds=settings.RECOVERY_STALE_AFTER)
    until = min(found["after"] or now, latest, now)
    return Span(incident=incident, start=min(start, incident.opened_at), end=end, until=until)


def build(incident: Incident, *, now: datetime | None = None) -> list[TimelineEntry]:
    """Every entry of every source, in order (the postmortem last: it has no time of its own), masked.

    Pass an incident loaded with `select_related("service", "acknowledged_by", "declared_by")` to spare
    the queries those would cost.
    """
    s = span(incident, now)
    entries = [_masked(e) for source in _sources for e in source(s)]
    return sorted(entries, key=lambda e: (e.kind == POSTMORTEM, e.at, _RANK.get(e.kind, _RANK_OTHER)))


def _masked(entry: TimelineEntry) -> TimelineEntry:
    """Secrets masked (core.mask) in every word a source took from a row: a command line, a URL, a DSN."""
    return TimelineEntry(entry.at, entry.kind, mask(entry.title), mask(entry.detail), mask(entry.data), entry.private)


def username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


# --- health's own source: state changes, the incident's fields, acknowledgements, updates -------------------


def _state_title(change: StateChange, first: bool) -> str:
    if change.new_status == DOWN and change.new_type == SOFT:
        return "First failure (SOFT down)" if first else "Down (SOFT)"
    if change.new_status == DOWN and change.new_type == HARD:
        return "First failure: HARD down" if first else "HARD down"
    return f"{change.new_status.capitalize()} (was {change.old_status}/{change.old_type})"


def health_source(s: Span) -> Iterable[TimelineEntry]:
    incident = s.incident
    changes = StateChange.objects.filter(
        service_id=s.service_id, created_at__gte=s.start, created_at__lte=s.end
    ).order_by("created_at", "pk")
    for i, change in enumerate(changes):
        yield TimelineEntry(
            change.created_at,
            STATE_CHANGE,
            _state_title(change, first=i == 0 and change.old_status != DOWN),
            change.detail,
            {
                "oldStatus": change.old_status,
                "oldType": change.old_type,
                "newStatus": change.new_status,
                "newType": change.new_type,
            },
        )
    declared = username(incident.declared_by) if incident.declared_by_id else None
    yield TimelineEntry(
        incident.opened_at,
        OPENED,
        f"Incident opened by {declared}" if declared else f"Incident opened ({incident.severity})",
        incident.cause,
        {"severity": incident.severity, "declaredBy": declared, "parent": incident.parent_id},
    )
    # The incident's own events: acknowledgements (an escalation clears the field; the event keeps it),
    # escalations, and who closed a declared one.
    events = list(
        Event.objects.filter(
            service_id=incident.service_id,
            kind__in=[Event.Kind.INCIDENT_ACKNOWLEDGED, Event.Kind.RECOVERY_ESCALATED, Event.Kind.INCIDENT_RESOLVED],
            data__incident=incident.pk,
        ).order_by("created_at", "pk")
    )
    acknowledgements = [e for e in events if e.kind == Event.Kind.INCIDENT_ACKNOWLEDGED]
    for event in acknowledgements:
        by = event.data.get("user")
        yield TimelineEntry(event.created_at, ACKNOWLEDGED, f"Acknowledged by {by or 'someone'}", "", {"by": by})
    if not acknowledgements and incident.acknowledged_at is not None:
        by = username(incident.acknowledged_by)
        yield TimelineEntry(
            incident.acknowledged_at, ACKNOWLEDGED, f"Acknowledged by {by or 'someone'}", "", {"by": by}
        )
    for event in events:
        if event.kind == Event.Kind.RECOVERY_ESCALATED:
            failures = event.data.get("failures")
            yield TimelineEntry(event.created_at, ESCALATED, event.title, event.body, {"failures": failures})
    for update in (
        IncidentUpdate.objects.filter(incident=incident).select_related("author").order_by("created_at", "pk")
    ):
        yield TimelineEntry(
            update.created_at,
            UPDATE,
            f"Update: {update.status}" + ("" if update.public else " (internal)"),
            update.message,
            {"status": update.status, "public": update.public, "by": username(update.author)},
        )
    if incident.resolved_at is not None:
        seconds = (incident.resolved_at - incident.opened_at).total_seconds()
        closed_by = next((e.data.get("closedBy") for e in events if e.kind == Event.Kind.INCIDENT_RESOLVED), None)
        yield TimelineEntry(
            incident.resolved_at,
            RESOLVED,
            f"Incident closed by {closed_by}" if closed_by else "Incident resolved",
            f"after {_duration(seconds)}",
            {"durationSeconds": round(seconds, 3), "closedBy": closed_by},
        )
    if incident.postmortem:
        yield TimelineEntry(incident.resolved_at or incident.opened_at, POSTMORTEM, "Postmortem", incident.postmortem)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min"


register(health_source)
