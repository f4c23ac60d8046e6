"""Notifications: Event rows (the outbox) delivered to Channels through apprise.

Events are written where things happen (the runner, the recovery engine, the tunnel watchdog, the
database breaker); nothing is sent there. `process_outbox()` does the sending, out of the request and
probe paths: seconds after an event's transaction commits (notify.realtime: a Django-Q2 task, or this
process's sender thread), and every minute as the `opsportal-notify` schedule, the safety net:

1. `fan_out`: each unprocessed event becomes one Delivery row per channel that wants it (kind and
   service filters). An event the runner marked `held` (its service flaps, or its incident is a
   child of its parent's) becomes a `held` row, sent nowhere; except an `incident_resolved` on a
   channel its `incident_opened` went out to (sent or pending): a pager must hear the end of what it
   was told began (it is sent no earlier than that opening's next try, and `send_due` holds it while
   the opening is still pending).
2. `send_due`: pending deliveries are claimed (a conditional UPDATE, so two workers never send one
   twice), sent, and marked `sent`; a failure is retried NOTIFY_MAX_ATTEMPTS times in all, waiting
   NOTIFY_RETRY_SECONDS, doubling, then marked `failed` with the (scrubbed) error. Each sent one is
   logged (INFO: kind, channel name, subject, milliseconds; never the URL).
3. `remind`: open, unacknowledged incidents get a `reminder` event every `remind_every` seconds.

Channel URLs name secrets as `${VAR}`; they are expanded only here, at send time, and every error
text is scrubbed of them before it is stored or logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

import apprise
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from core.spec import ConfigError, expand_env, scrub
from health.events import hold_reason
from health.models import Event, Incident
from notify.models import Channel, Delivery

log = logging.getLogger("opsportal.health")
Kind = Event.Kind
Status = Delivery.Status

NOTIFY_TYPES = {
    Kind.INCIDENT_OPENED: apprise.NotifyType.FAILURE,
    Kind.INCIDENT_ACKNOWLEDGED: apprise.NotifyType.INFO,
    Kind.INCIDENT_RESOLVED: apprise.NotifyType.SUCCESS,
    Kind.INCIDENT_UPDATE: apprise.NotifyType.INFO,
    Kind.RECOVERY_SUCCEEDED: apprise.NotifyType.SUCCESS,
    Kind.RECOVERY_FAILED: apprise.NotifyType.WARNING,
    Kind.RECOVERY_ESCALATED: apprise.NotifyType.FAILURE,
    Kind.TUNNEL_RESTARTED: apprise.NotifyType.WARNING,
    Kind.TUNNEL_RESTART_SUPPRESSED: apprise.NotifyType.FAILURE,
    Kind.BREAKER_OPENED: apprise.NotifyType.FAILURE,
    Kind.BREAKER_CLOSED: apprise.NotifyType.SUCCESS,
    Kind.SCHEDULER_LATE: apprise.NotifyType.WARNING,
    Kind.FLAPPING_STARTED: apprise.NotifyType.WARNING,
    Kind.FLAPPING_STOPPED: apprise.NotifyType.INFO,
    Kind.REMINDER: apprise.NotifyType.WARNING,
    Kind.SERVICE_MISCONFIGURED: apprise.NotifyType.WARNING,
    Kind.SPOOL_DROPPED: apprise.NotifyType.FAILURE,
    Kind.TEST: apprise.NotifyType.INFO,
}
# Never held: the flapping notices are what goes out instead of the held ones.
NEVER_HELD = {Kind.FLAPPING_STARTED, Kind.FLAPPING_STOPPED, Kind.TEST}


def fan_out(now: dt.datetime | None = None, limit: int = 500) -> int:
    """Turn unprocessed events into Delivery rows. Returns the number of rows created."""
    now = now or timezone.now()
    pending = Event.objects.filter(processed_at__isnull=True).select_related("service")
    events = list(pending.order_by("created_at", "pk")[:limit])
    if not events:
        return 0
    channels = list(Channel.objects.filter(enabled=True).prefetch_related("services"))
    scopes = {c.pk: {s.pk for s in c.services.all()} for c in channels}
    rows: list[Delivery] = []
    announced = _announced(events)
    for event in events:
        only = event.data.get("channels") if isinstance(event.data, dict) else None
        # The runner decides at the moment of the event ("held" in data); others are judged now.
        data = event.data if isinstance(event.data, dict) else {}
        held = "" if event.kind in NEVER_HELD else (data["held"] if "held" in data else hold_reason(event.service))
        incident = data.get("incident") if event.kind in (Kind.INCIDENT_OPENED, Kind.INCIDENT_RESOLVED) else None
        for channel in channels:
            if only is not None and channel.pk not in only:
                continue
            if only is None and not channel.wants(event, scopes[channel.pk]):
                continue
            due: dt.datetime | None = now
            hold = held
            if event.kind == Kind.INCIDENT_RESOLVED and (incident, channel.pk) in announced:
                # Its opening went out here: a pager incident left open forever is worse than a
                # resolution while the service flaps. Never sent before the opening's retry.
                hold, due = "", max(now, announced[incident, channel.pk] or now)
            row = Delivery(
                channel=channel,
                event=event,
                created_at=now,
                status=Status.HELD if hold else Status.PENDING,
                next_attempt_at=None if hold else due,
                error=f"held: {hold}" if hold else "",
            )
            rows.append(row)
            if event.kind == Kind.INCIDENT_OPENED and incident is not None and not hold:
                announced[incident, channel.pk] = due  # an opening in this same batch
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    Event.objects.filter(pk__in=[e.pk for e in events], processed_at__isnull=True).update(processed_at=now)
    return len(rows)


def _announced(events: list[Event]) -> dict[tuple[int, int], dt.datetime | None]:
    """{(incident, channel): the opening's next attempt (None when sent)} for the incidents these events
    resolve whose `incident_opened` went out (sent or pending, not held or failed) to that channel."""
    resolving = {
        e.data["incident"]
        for e in events
        if e.kind == Kind.INCIDENT_RESOLVED and isinstance(e.data, dict) and e.data.get("incident") is not None
    }
    if not resolving:
        return {}
    opened = Delivery.objects.filter(
        event__kind=Kind.INCIDENT_OPENED,
        event__data__incident__in=sorted(resolving),
        status__in=[Status.SENT, Status.PENDING],
    ).values_list("event__data__incident", "channel_id", "status", "next_attempt_at")
    return {
        (incident, channel): (due if status == Status.PENDING else None) for incident, channel, status, due in opened
    }


# --- 2. send ------------------------------------------------------------------------------------
@dataclass
class SendResult:
    ok: bool
    error: str = ""


def message(event: Event) -> tuple[str, str]:
    """Title and body of an event's notification."""
    title = event.title or event.kind
    when = event.created_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [event.body] if event.body else []
    lines.append(f"{event.get_kind_display()} · {event.subject or 'opsportal'} · {when}")
    return title, "\n".join(lines)


def send(channel: Channel, event: Event) -> SendResult:
    """Send one event to one channel now. Never raises; the error is scrubbed of the URL's secrets."""
    secrets: list[str] = []
    try:
        url = expand_env(channel.url, secrets)
    except ConfigError as exc:
        return SendResult(False, f"{channel.name}: {exc.message}")
    notifier = apprise.Apprise()
    if not notifier.add(url):
        return SendResult(False, scrub(f"not a valid apprise URL: {channel.url}", secrets))
    title, body = message(event)
    try:
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            kind = NOTIFY_TYPES.get(event.kind, apprise.NotifyType.INFO)
            ok = notifier.notify(title=title, body=body, notify_type=kind)
        error = "" if ok else (captured.getvalue().strip().splitlines() or ["sending failed"])[-1]
    except Exception as exc:  # a plugin bug must not stop the outbox
        ok, error = False, f"{type(exc).__name__}: {exc}"
    return SendResult(bool(ok), scrub(error, secrets)[:500])


def backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=settings.NOTIFY_RETRY_SECONDS * 2 ** max(0, attempts - 1))


def deliver(delivery: Delivery, now: dt.datetime | None = None) -> bool:
    """Claim a pending delivery, send it and record the outcome. False when another worker had it."""
    now = now or timezone.now()
    # The claim: attempts must still be what we read, and the lease keeps others off while we send.
    lease = now + dt.timedelta(seconds=settings.NOTIFY_TIMEOUT_SECONDS)
    claimed = Delivery.objects.filter(pk=delivery.pk, status=Status.PENDING, attempts=delivery.attempts).update(
        attempts=F("attempts") + 1, next_attempt_at=lease
    )
    if not claimed:
        return False
    delivery.attempts += 1
    started = time.monotonic()
    result = send(delivery.channel, delivery.event)
    took_ms = (time.monotonic() - started) * 1000
    done = timezone.now()
    if result.ok:
        delivery.status, delivery.sent_at, delivery.error, delivery.next_attempt_at = Status.SENT, done, "", None
        # The channel's name, never its URL (it holds tokens).
        log.info(
            "Notification %s sent to %s: %s (%.0f ms)",
            delivery.event.kind,
            delivery.channel.name,
            delivery.event.subject or "opsportal",
            took_ms,
        )
    elif delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        delivery.status, delivery.error, delivery.next_attempt_at = Status.FAILED, result.error, None
        log.warning(
            "Notification %s to %s failed after %d attempts: %s",
            delivery.event.kind,
            delivery.channel.name,
            delivery.attempts,
            result.error,
        )
    else:
        delivery.error, delivery.next_attempt_at = result.error, done + backoff(delivery.attempts)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=delivery.status, sent_at=delivery.sent_at, error=delivery.error, next_attempt_at=delivery.next_attempt_at
    )
    return True


def send_due(now: dt.datetime | None = None, limit: int = 200) -> tuple[int, int]:
    """Send the deliveries that are due. Returns (sent, failed for now or for good)."""
    now = now or timezone.now()
    due = list(
        Delivery.objects.filter(status=Status.PENDING, next_attempt_at__lte=now)
        .select_related("channel", "event")
        .order_by("next_attempt_at", "pk")[:limit]
    )
    sent = failed = 0
    for delivery in due:
        if _wait_for_opening(delivery, now):
            continue
        if deliver(delivery, now):
            sent += delivery.status == Status.SENT
            failed += delivery.status != Status.SENT
    return sent, failed


def _wait_for_opening(delivery: Delivery, now: dt.datetime) -> bool:
    """Hold a resolution while its incident's opening to the same channel is still pending: fan-out made it
    due at the opening's next try, but a failed try pushes the opening back (the wait doubles), and a pager
    told "resolved" first keeps the late "opened" open. It moves to the opening's next try; True if held."""
    event = delivery.event
    incident = event.data.get("incident") if isinstance(event.data, dict) else None
    if event.kind != Kind.INCIDENT_RESOLVED or incident is None:
        return False
    opening = list(
        Delivery.objects.filter(
            channel_id=delivery.channel_id,
            status=Status.PENDING,
            event__kind=Kind.INCIDENT_OPENED,
            event__data__incident=incident,
        )
        .order_by("-next_attempt_at")
        .values_list("next_attempt_at", flat=True)[:1]
    )
    if not opening:
        return False
    due = max(opening[0] or now, now)
    # Conditional, as a claim is: a worker that has just claimed it keeps it.
    Delivery.objects.filter(pk=delivery.pk, status=Status.PENDING, attempts=delivery.attempts).update(
        next_attempt_at=due
    )
    return True


# --- 3. reminders ---------------------------------------------------------------------------------
def remind(now: dt.datetime | None = None) -> int:
    """Emit a `reminder` event for each open, unacknowledged incident whose reminder is due.

    The interval is the service's `remind_every`, else the channel's; each channel gets reminders at
    its own pace. Incidents held (maintenance, flapping, a child of its parent's) get none.
    """
    now = now or timezone.now()
    channels = list(Channel.objects.filter(enabled=True).prefetch_related("services"))
    channels = [c for c in channels if not c.events or Kind.REMINDER in c.events]
    incidents = Incident.objects.filter(resolved_at__isnull=True, acknowledged_at__isnull=True, parent__isnull=True)
    if not any(c.remind_every for c in channels):
        incidents = incidents.filter(service__remind_every__gt=0)
    incidents = list(incidents.select_related("service"))
    if not incidents or not channels:
        return 0
    # When each (incident, channel) was last reminded: from the reminder events themselves.
    last: dict[tuple[int, int], dt.datetime] = {}
    previous = Event.objects.filter(kind=Kind.REMINDER, created_at__gte=min(i.opened_at for i in incidents))
    for data, created in previous.values_list("data", "created_at"):
        for channel_id in data.get("channels") or []:
            key = (data.get("incident"), channel_id)
            last[key] = max(created, last.get(key, created))
    emitted = 0
    for incident in incidents:
        service = incident.service
        if hold_reason(service):
            continue
        due = []
        for channel in channels:
            scope = {s.pk for s in channel.services.all()}
            every = service.remind_every or channel.remind_every
            if not every or (scope and service.pk not in scope):
                continue
            since = last.get((incident.pk, channel.pk), incident.opened_at)
            if (now - since).total_seconds() >= every:
                due.append(channel.pk)
        if due:
            minutes = int((now - incident.opened_at).total_seconds() // 60)
            Event.emit(
                Kind.REMINDER,
                f"{service.name} is still {service.status} (for {minutes} min)",
                at=now,
                service=service,
                body=incident.last_error or incident.cause,
                incident=incident.pk,
                channels=due,
            )
            emitted += 1
    return emitted


# --- the scheduled pass (dispatch.tasks.notify) ------------------------------------------------------
def process_outbox(now: dt.datetime | None = None) -> str:
    """One pass: reminders, fan-out, sending. Returns a one-line summary."""
    now = now or timezone.now()
    reminders = remind(now)
    created = fan_out(now)
    sent, failed = send_due(now)
    return f"notify: {reminders} reminders, {created} deliveries queued, {sent} sent, {failed} failed"


def send_test(channel: Channel, user: str = "") -> Delivery:
    """The admin's "Send test notification": an event for this channel alone, sent at once."""
    event = Event.emit(
        Kind.TEST,
        f"Test notification from opsportal to {channel.name}",
        subject=channel.name,
        body=f"Sent from the admin{f' by {user}' if user else ''}. If you can read this, the channel works.",
        channels=[channel.pk],
    )
    now = timezone.now()
    delivery = Delivery.objects.create(channel=channel, event=event, created_at=now, next_attempt_at=now)
    Event.objects.filter(pk=event.pk).update(processed_at=now)
    delivery.channel, delivery.event = channel, event
    deliver(delivery, now)
    delivery.refresh_from_db()
    return delivery
