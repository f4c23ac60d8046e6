"""What people do with incidents: post updates, declare and close one by hand, attach a postmortem.

The dashboard and the API (POST /api/v1/incidents/<id>/updates) call these functions; they validate,
write with conditional UPDATEs where two people (or a person and the runner) can race, and emit the
outbox events (`Event.emit`, data `incident`, `update`, `status`).

Rules (README "Incidents"):
- A public update becomes an `incident_update` event for the channels; a non-public one is a row only.
- An update with status `resolved` on a *declared* incident (a person opened it) resolves it and emits
  `incident_resolved`, as the runner does on recovery. On a probe-driven incident it is only a message:
  the probe decides when that one ends.
- A declared incident is closed only by a person (the runner never resolves it, health.runner); a
  probe-driven one cannot be closed by hand.
- The postmortem can be written only once the incident is resolved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from health.models import Event, Incident, IncidentUpdate, Service
from health.spec import UPDATE_STATUSES

MESSAGE_MAX = 5000
POSTMORTEM_MAX = 50_000
CAUSE_MAX = Incident._meta.get_field("cause").max_length or 500
DECLARE_SEVERITIES = (Incident.Severity.WARNING.value, Incident.Severity.CRITICAL.value)


class IncidentError(Exception):
    """Bad input or a state that forbids the action; `field` names the key/form field at fault (or "")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _username(user: Any) -> str:
    return user.get_username() if user is not None else "someone"


def _text(field: str, value: Any, limit: int, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise IncidentError(field, f"{field} must be text")
    value = value.strip()
    if required and not value:
        raise IncidentError(field, f"{field} must not be empty")
    if len(value) > limit:
        raise IncidentError(field, f"{field} must be at most {limit} characters (got {len(value)})")
    return value


def is_declared(incident: Incident) -> bool:
    return incident.declared_by_id is not None


def post_update(
    incident: Incident,
    *,
    status: str,
    message: str,
    public: bool = True,
    author: Any = None,
    now: datetime | None = None,
) -> IncidentUpdate:
    """Record an update; a public one goes to the channels. `resolved` on a declared incident resolves it."""
    if status not in UPDATE_STATUSES:
        raise IncidentError("status", f"status must be one of {', '.join(UPDATE_STATUSES)}")
    message = _text("message", message, MESSAGE_MAX)
    now = now or timezone.now()
    service = incident.service
    with transaction.atomic():
        update = IncidentUpdate.objects.create(
            incident=incident, created_at=now, status=status, message=message, public=bool(public), author=author
        )
        if public:
            Event.emit(
                Event.Kind.INCIDENT_UPDATE,
                f"{service.name} incident update: {status}",
                service=service,
                body=message,
                at=now,
                incident=incident.pk,
                update=update.pk,
                status=status,
                author=_username(author),
                held="",  # a person's word is sent even while the service flaps or is in maintenance
            )
        if status == IncidentUpdate.Status.RESOLVED and is_declared(incident):
            _resolve(incident, author, now)
    return update


def declare(
    service: Service,
    *,
    severity: str,
    cause: str,
    user: Any,
    message: str = "",
    public: bool = True,
    now: datetime | None = None,
) -> Incident:
    """Open an incident by hand (no probe failure: e.g. a degraded third party); `cause` is its title.

    A service has at most one open incident (the database says so): declaring while one is open is refused.
    An optional `message` becomes its first update (`investigating`)."""
    if user is None:  # declared_by is what marks it as a person's, closed only by a person
        raise IncidentError("user", "a declared incident needs the person who declares it")
    if severity not in DECLARE_SEVERITIES:
        raise IncidentError("severity", f"severity must be one of {', '.join(DECLARE_SEVERITIES)}")
    cause = _text("cause", cause, CAUSE_MAX)
    message = _text("message", message, MESSAGE_MAX, required=False)
    now = now or timezone.now()
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                service=service, opened_at=now, severity=severity, cause=cause, declared_by=user
            )
            Event.emit(
                Event.Kind.INCIDENT_OPENED,
                f"{service.name}: {cause}",
                service=service,
                body=f"Declared by {_username(user)}.",
                at=now,
                incident=incident.pk,
                severity=severity,
                declaredBy=_username(user),
                held="",
            )
            if message:
                post_update(incident, status="investigating", message=message, public=public, author=user, now=now)
    except IntegrityError:
        # one_open_incident_per_service: the runner (or another person) opened one first.
        raise IncidentError("service", f"{service.name} already has an open incident") from None
    return incident


def close(
    incident: Incident, *, user: Any, message: str = "", public: bool = True, now: datetime | None = None
) -> bool:
    """Close a declared incident. With a message, that is its closing `resolved` update.

    False when it was already resolved (two people pressing at once close it once)."""
    if not is_declared(incident):
        raise IncidentError("incident", "only a declared incident is closed by hand; the probe resolves this one")
    message = _text("message", message, MESSAGE_MAX, required=False)
    if not incident.is_open:
        return False
    now = now or timezone.now()
    with transaction.atomic():
        if message:
            post_update(incident, status="resolved", message=message, public=public, author=user, now=now)
            return incident.resolved_at == now
        return _resolve(incident, user, now)


def _resolve(incident: Incident, user: Any, now: datetime) -> bool:
    """Resolve it once (a conditional UPDATE) and emit `incident_resolved`, as the runner does."""
    if not Incident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(resolved_at=now):
        return False
    incident.resolved_at = now
    service = incident.service
    Event.emit(
        Event.Kind.INCIDENT_RESOLVED,
        f"{service.name}: resolved ({incident.cause})"[:200],
        service=service,
        body=f"Closed by {_username(user)}.",
        at=now,
        incident=incident.pk,
        openedAt=incident.opened_at.isoformat(),
        closedBy=_username(user),
        held="",
    )
    return True


def set_postmortem(incident: Incident, text: str) -> None:
    """Attach (or replace, or with "" remove) the postmortem; only once the incident is resolved."""
    text = _text("postmortem", text, POSTMORTEM_MAX, required=False)
    # Conditional: the incident must still be resolved when written (no reopening exists today, but the
    # rule holds in the database, not in what this process read).
    if not Incident.objects.filter(pk=incident.pk, resolved_at__isnull=False).update(postmortem=text):
        raise IncidentError("postmortem", "a postmortem can be written only after the incident is resolved")
    incident.postmortem = text
