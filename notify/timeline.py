"""notify's part of an incident's timeline (health.timeline): who was told what, on which channel, and how
it went (sent, failed and why, held and why, still pending). Registered in notify's AppConfig.ready()."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Prefetch, Q

from health.models import Event
from health.timeline import NOTIFICATION, Span, TimelineEntry, register
from notify.models import Delivery

Kind = Event.Kind
Status = Delivery.Status
# Events about the service that name no incident: matched by time (recovery's after the end too).
RECOVERY_KINDS = [Kind.RECOVERY_SUCCEEDED, Kind.RECOVERY_FAILED]
FLAPPING_KINDS = [Kind.FLAPPING_STARTED, Kind.FLAPPING_STOPPED]


def _title(delivery: Delivery, event: Event) -> str:
    channel = delivery.channel.name
    if delivery.status == Status.SENT:
        return f"Notified {channel}: {event.title}"
    if delivery.status == Status.HELD:
        return f"Held for {channel}: {event.title}"
    if delivery.status == Status.FAILED:
        return f"Not delivered to {channel} after {delivery.attempts} attempts: {event.title}"
    tried = f" (retrying after {delivery.attempts} attempts)" if delivery.attempts else ""
    return f"Sending to {channel}{tried}: {event.title}"


def deliveries_source(s: Span) -> Iterable[TimelineEntry]:
    """Two queries: the incident's events, and their deliveries with the channels."""
    events = (
        Event.objects.filter(service_id=s.service_id, created_at__gte=s.start)
        .filter(
            Q(data__incident=s.incident.pk)
            | Q(kind__in=RECOVERY_KINDS, created_at__lt=s.until)
            | Q(kind__in=FLAPPING_KINDS, created_at__lte=s.end)
        )
        .prefetch_related(Prefetch("deliveries", Delivery.objects.select_related("channel").order_by("pk")))
        .order_by("created_at", "pk")
    )
    for event in events:
        deliveries = list(event.deliveries.all())
        base = {"event": event.pk, "eventKind": event.kind}
        if not deliveries:
            waiting = event.processed_at is None
            yield TimelineEntry(
                event.created_at if waiting else event.processed_at,
                NOTIFICATION,
                f"{'Queued for notification' if waiting else 'Sent nowhere (no channel takes it)'}: {event.title}",
                event.body,
                {**base, "channel": None, "status": "queued" if waiting else "unrouted"},
            )
            continue
        for delivery in deliveries:
            yield TimelineEntry(
                delivery.sent_at or delivery.created_at,
                NOTIFICATION,
                _title(delivery, event),
                delivery.error,  # "held: flapping", or the (scrubbed) error of the last try
                {
                    **base,
                    "channel": delivery.channel.name,
                    "status": delivery.status,
                    "attempts": delivery.attempts,
                    "sentAt": delivery.sent_at.isoformat() if delivery.sent_at else None,
                },
            )


def register_source() -> None:
    register(deliveries_source)
