"""Services, their probe results, state changes and incidents.

A Service row carries its current state (status, counters, last result) so reads
are one query; every result and every change of state is also a row of its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.named import NamedQuerySet
from core.signals import events_written
from core.spec import ConfigError, field_validators
from core.spool import create_or_spool
from health.probes import registry as probe_registry
from health.probes.base import DEGRADED, DOWN, MISCONFIGURED, UP, ProbeOutcome
from health.spec import MAINTENANCE_KEYS, SERVICE_KEYS, validate_tags
from health.windows import validate_window, window_active

UNKNOWN, PAUSED = "unknown", "paused"
SOFT, HARD = "soft", "hard"
HEALTHY = "healthy"


def probe_kinds() -> list[tuple[str, str]]:
    return probe_registry.choices()


class ServiceStatus(TypedDict):
    """One service in /health/status `services` and `runprobes --json`."""

    kind: str
    status: str
    stateType: str
    critical: bool
    latencyMs: float | None
    lastCheckedAt: str | None
    consecutiveFailures: int
    detail: str
    flapping: bool
    maintenance: bool
    tags: list[str]


class Service(models.Model):
    class Status(models.TextChoices):
        UNKNOWN = UNKNOWN
        UP = UP
        DEGRADED = DEGRADED
        DOWN = DOWN
        PAUSED = PAUSED
        MISCONFIGURED = MISCONFIGURED

    class StateType(models.TextChoices):
        SOFT = SOFT
        HARD = HARD

    # Configuration
    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=probe_kinds)
    description = models.CharField(max_length=200, blank=True)
    settings = models.JSONField(default=dict, blank=True, help_text="Kind-specific keys (see README).")
    # Validators from the config keys (health.spec): the admin refuses what the file import refuses.
    interval = models.PositiveIntegerField(
        default=60, validators=field_validators(SERVICE_KEYS["interval"]), help_text="seconds"
    )
    timeout = models.FloatField(default=5.0, validators=field_validators(SERVICE_KEYS["timeout"]), help_text="seconds")
    critical = models.BooleanField(default=True)
    failure_threshold = models.PositiveIntegerField(
        default=2, validators=field_validators(SERVICE_KEYS["failure_threshold"])
    )
    degraded_latency_ms = models.PositiveIntegerField(
        default=2000, validators=field_validators(SERVICE_KEYS["degraded_latency_ms"]), help_text="0 turns it off"
    )
    enabled = models.BooleanField(default=True)
    paused = models.BooleanField(default=False, help_text="Maintenance: probed and stored, no incidents.")
    tags = models.JSONField(
        default=list, blank=True, validators=[validate_tags], help_text="Labels to filter on (the services list)."
    )
    depends_on = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="dependents")
    remind_every = models.PositiveIntegerField(
        default=0,
        validators=field_validators(SERVICE_KEYS["remind_every"]),
        help_text="seconds between reminders while an incident stays open; 0: off",
    )

    # Current state, kept on the row for cheap reads
    status = models.CharField(max_length=16, choices=Status.choices, default=UNKNOWN)
    state_type = models.CharField(max_length=8, choices=StateType.choices, default=HARD)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_latency_ms = models.FloatField(null=True, blank=True)
    last_detail = models.CharField(max_length=500, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # Scheduling: when the next probe is due, and since when one is running (a claim)
    next_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    running_since = models.DateTimeField(null=True, blank=True)
    # Which dispatcher loop holds the claim (dispatch.scheduler): a dead loop's claims are taken over at once.
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    # Set each round from MaintenanceWindow rows (health.maintenance): paused while a window is open.
    in_maintenance = models.BooleanField(default=False)
    # Flap detection (health.flapping): the last 21 states as letters, oldest first.
    flap_history = models.CharField(max_length=21, blank=True, editable=False)
    flap_percent = models.FloatField(default=0.0)
    flapping = models.BooleanField(default=False)
    # When the certificate the last tls/https probe read expires (/metrics opsportal_cert_expiry_seconds).
    cert_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # A `push` service's secret address (/ping/<uuid>): made on creation, never changed by importconfig
    # (which updates rows by name and does not know this field).
    ping_uuid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    badge = models.BooleanField(default=False, help_text="Serve /badge/<name>.svg without a public status page.")
    evidence_log = models.JSONField(
        default=list, blank=True, help_text="Log files whose tail is kept before a restart."
    )
    evidence_lines = models.PositiveIntegerField(
        default=100, validators=field_validators(SERVICE_KEYS["evidence_lines"]), help_text="lines kept per log file"
    )
    evidence_timeout = models.FloatField(
        default=2.0, validators=field_validators(SERVICE_KEYS["evidence_timeout"]), help_text="seconds"
    )

    objects = NamedQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        # Dashboard and API actions (health.permissions); superusers have them all.
        permissions = [
            ("pause_service", "Can pause and resume a service"),
            ("probe_now", "Can probe a service now"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind not in probe_registry:
            raise ValidationError({"kind": f"unknown kind {self.kind!r}"})
        try:
            self.settings = probe_registry.get(self.kind).validate_settings(self.settings, "settings")
        except ConfigError as exc:
            raise ValidationError({"settings": str(exc)}) from None

    @property
    def is_paused(self) -> bool:
        return not self.enabled or self.paused or self.in_maintenance

    @property
    def is_hard_down(self) -> bool:
        return self.status == DOWN and self.state_type == HARD

    @property
    def healthy(self) -> bool:
        return self.status in (UP, DEGRADED)

    def apply_outcome(self, outcome: ProbeOutcome, now: datetime) -> Transition:
        """Advance the SOFT/HARD state machine by one probe outcome (in memory; the caller saves)."""
        old_status, old_type = self.status, self.state_type
        self.last_checked_at = now
        self.last_latency_ms = outcome.latency_ms
        self.last_detail = outcome.detail[:500]
        if outcome.cert_expires_at is not None:  # a probe that read no certificate leaves the last one known
            self.cert_expires_at = outcome.cert_expires_at
        if outcome.status == MISCONFIGURED:
            # The probe could not run as configured: no failure counted (no SOFT/HARD, no incident).
            self.consecutive_failures = self.consecutive_successes = 0
            self.last_error = outcome.detail[:500]
            new_status, new_type = MISCONFIGURED, HARD
        elif outcome.status == DOWN:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            self.last_error = outcome.detail[:500]
            new_status = DOWN
            new_type = HARD if self.consecutive_failures >= self.failure_threshold else SOFT
        else:
            self.consecutive_failures = 0
            self.consecutive_successes += 1
            new_status, new_type = outcome.status, HARD
        if self.is_paused:
            new_status, new_type = PAUSED, HARD
        self.status, self.state_type = new_status, new_type
        changed = (old_status, old_type) != (new_status, new_type)
        if changed:
            self.status_changed_at = now
        return Transition(
            service=self,
            old_status=old_status,
            old_type=old_type,
            changed=changed,
            became_hard_down=self.is_hard_down and not (old_status == DOWN and old_type == HARD),
            recovered=new_status in (UP, DEGRADED),
        )

    def set_paused(self, paused: bool, *, now: datetime | None = None) -> bool:
        """Maintenance on/off (the dashboard's Pause/Resume). Returns False when nothing changed.

        Pausing shows `paused` at once; resuming shows `unknown` until the next probe, because
        nothing is known about a service while it was paused.
        """
        if self.paused == paused:
            return False
        now = now or timezone.now()
        old_status, old_type = self.status, self.state_type
        self.paused = paused
        if paused:
            self.status, self.state_type = PAUSED, HARD
        elif self.status == PAUSED and self.enabled:
            self.status, self.state_type = UNKNOWN, HARD
        changed = (old_status, old_type) != (self.status, self.state_type)
        if changed:
            self.status_changed_at = now
        self.save(update_fields=["paused", "status", "state_type", "status_changed_at", "updated_at"])
        if changed:
            StateChange.objects.create(
                service=self,
                created_at=now,
                old_status=old_status,
                old_type=old_type,
                new_status=self.status,
                new_type=self.state_type,
                detail="paused (maintenance)" if paused else "resumed",
            )
        return True

    def status_dict(self) -> ServiceStatus:
        """This service as `/health/status` and `runprobes --json` show it."""
        return {
            "kind": self.kind,
            "status": self.status,
            "stateType": self.state_type,
            "critical": self.critical,
            "latencyMs": None if self.last_latency_ms is None else round(self.last_latency_ms, 1),
            "lastCheckedAt": self.last_checked_at.isoformat() if self.last_checked_at else None,
            "consecutiveFailures": self.consecutive_failures,
            "detail": self.last_detail,
            "flapping": self.flapping,
            "maintenance": self.in_maintenance,
            "tags": list(self.tags or []),
        }


@dataclass
class Transition:
    service: Service
    old_status: str
    old_type: str
    changed: bool
    became_hard_down: bool
    recovered: bool


def overall_status(services: list[Service]) -> str:
    """healthy: all up; down: a critical service is HARD down; degraded: anything else.

    Paused services do not count; a service never probed is not known to be up; a misconfigured one
    (even critical) makes it degraded, never down: its configuration failed, not the service.
    """
    counted = [s for s in services if s.status != PAUSED and not s.is_paused]
    if any(s.critical and s.is_hard_down for s in counted):
        return DOWN
    if all(s.status == UP for s in counted):
        return HEALTHY
    return DEGRADED


class ProbeResult(models.Model):
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="results")
    checked_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=16, choices=[(UP, UP), (DEGRADED, DEGRADED), (DOWN, DOWN), (MISCONFIGURED, MISCONFIGURED)]
    )
    latency_ms = models.FloatField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    # Taken while the service was paused (a maintenance window, Pause, or disabled): stored, not counted in
    # uptime. Decided when the result is written, as incidents are (health.rollups, docs/architecture.md).
    maintenance = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [
            # "latest N of a service" and "a service over a time range"
            models.Index(fields=["service", "-checked_at"], name="result_service_time"),
            models.Index(fields=["checked_at"], name="result_time"),
        ]

    def __str__(self) -> str:
        return f"{self.service_id} {self.status} @ {self.checked_at:%Y-%m-%d %H:%M:%S}"


# What a job reports through /ping/<uuid>[/start|/fail|/<exit status>|/log] (api.ping; the `push` kind reads them).
PING_SUCCESS, PING_START, PING_FAIL, PING_LOG = "success", "start", "fail", "log"
PING_BODY_MAX = 100 * 1024


class Ping(models.Model):
    # Keyed by the service's ping uuid, not its pk: a ping that arrives while the database is away is
    # spooled with the uuid from its URL and replayed as is. No database constraint: a spooled ping whose
    # uuid matches no service is kept as an orphan, never a refused row that sets a whole replay batch aside.
    service = models.ForeignKey(
        Service, to_field="ping_uuid", db_constraint=False, on_delete=models.CASCADE, related_name="pings"
    )
    received_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(
        max_length=8,
        choices=[(PING_SUCCESS, PING_SUCCESS), (PING_START, PING_START), (PING_FAIL, PING_FAIL), (PING_LOG, PING_LOG)],
    )
    exit_status = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.TextField(blank=True)
    remote_addr = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["service", "-received_at"], name="ping_service_time")]

    def __str__(self) -> str:
        return f"{self.service_id} {self.kind} @ {self.received_at:%Y-%m-%d %H:%M:%S}"


class StateChange(models.Model):
    """A row for every change of a service's state (Healthchecks' Flip)."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="state_changes")
    created_at = models.DateTimeField(default=timezone.now)
    old_status = models.CharField(max_length=16)
    old_type = models.CharField(max_length=8)
    new_status = models.CharField(max_length=16)
    new_type = models.CharField(max_length=8)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["service", "-created_at"], name="change_service_time")]

    def __str__(self) -> str:
        return f"{self.service_id}: {self.old_status}/{self.old_type} -> {self.new_status}/{self.new_type}"


class Incident(models.Model):
    class Severity(models.TextChoices):
        WARNING = "warning"
        CRITICAL = "critical"
        ESCALATED = "escalated"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="incidents")
    opened_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.CRITICAL)
    cause = models.CharField(max_length=500, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="The incident of the service this one depends on, when that caused it.",
    )
    # Set when a person opened it (no probe failure, e.g. a degraded third party); only a person closes it.
    declared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    postmortem = models.TextField(blank=True, help_text="Written after resolution; shown on the incident page.")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # One open incident per service at most, enforced by the database.
            models.UniqueConstraint(
                fields=["service"], condition=Q(resolved_at__isnull=True), name="one_open_incident_per_service"
            )
        ]
        indexes = [models.Index(fields=["resolved_at", "-opened_at"], name="incident_open_time")]
        permissions = [
            ("acknowledge_incident", "Can acknowledge an incident"),
            ("post_incident_update", "Can post incident updates and postmortems"),
            ("declare_incident", "Can open and close an incident by hand"),
        ]

    def __str__(self) -> str:
        return f"{self.service_id} incident opened {self.opened_at:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    def acknowledge(self, user: Any, *, now: datetime | None = None) -> bool:
        """A person has seen it: record who and when, and emit `incident_acknowledged`.

        A conditional UPDATE, so two people pressing at once record one acknowledgement.
        Returns False when it was already acknowledged or is resolved.
        """
        now = now or timezone.now()
        done = Incident.objects.filter(pk=self.pk, acknowledged_at__isnull=True, resolved_at__isnull=True).update(
            acknowledged_at=now, acknowledged_by=user
        )
        if not done:
            return False
        self.acknowledged_at, self.acknowledged_by = now, user
        Event.emit(
            Event.Kind.INCIDENT_ACKNOWLEDGED,
            f"{self.service.name} incident acknowledged by {user.get_username()}",
            service=self.service,
            incident=self.pk,
            user=user.get_username(),
        )
        return True


class IncidentUpdate(models.Model):
    """A person's word on an incident (investigating … resolved); public ones appear on status pages."""

    class Status(models.TextChoices):
        INVESTIGATING = "investigating"
        IDENTIFIED = "identified"
        MONITORING = "monitoring"
        RESOLVED = "resolved"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="updates")
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices)
    message = models.TextField()
    public = models.BooleanField(default=True, help_text="Shown on the status pages that list the service.")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["incident", "created_at"], name="incident_update_time")]

    def __str__(self) -> str:
        return f"{self.incident_id} {self.status} {self.created_at:%Y-%m-%d %H:%M}"


class EventQuerySet(models.QuerySet):
    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Event]:
        created = super().bulk_create(objs, *args, **kwargs)
        if created:
            events_written.send_robust(sender=Event, events=created, using=self.db)
        return created


class Event(models.Model):
    """A notification-worthy event (an outbox row): recorded where it happens, sent elsewhere (notify).

    Every insert, by save() (emit, the spool's replay) or bulk_create() (the runner, the breaker's writer),
    sends `core.signals.events_written`: notify delivers on commit without knowing the writers.
    """

    class Kind(models.TextChoices):
        INCIDENT_OPENED = "incident_opened"
        INCIDENT_ACKNOWLEDGED = "incident_acknowledged"
        INCIDENT_RESOLVED = "incident_resolved"
        INCIDENT_UPDATE = "incident_update"
        RECOVERY_SUCCEEDED = "recovery_succeeded"
        RECOVERY_FAILED = "recovery_failed"
        RECOVERY_ESCALATED = "recovery_escalated"
        TUNNEL_RESTARTED = "tunnel_restarted"
        TUNNEL_RESTART_SUPPRESSED = "tunnel_restart_suppressed"
        BREAKER_OPENED = "breaker_opened"
        BREAKER_CLOSED = "breaker_closed"
        SCHEDULER_LATE = "scheduler_late"
        SPOOL_DROPPED = "spool_dropped"  # core.spool: records an outage's full spool dropped
        FLAPPING_STARTED = "flapping_started"
        FLAPPING_STOPPED = "flapping_stopped"
        REMINDER = "reminder"
        SERVICE_MISCONFIGURED = "service_misconfigured"
        TEST = "test"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now)
    service = models.ForeignKey(Service, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    subject = models.CharField(max_length=100, blank=True, help_text="what it is about: a service or tunnel name")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "-created_at"], name="event_kind_time")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        adding = self._state.adding
        super().save(*args, **kwargs)
        if adding:
            events_written.send_robust(sender=Event, events=[self], using=self._state.db)

    @staticmethod
    def row(
        kind: str,
        title: str,
        *,
        service: Service | None = None,
        subject: str = "",
        body: str = "",
        at: datetime | None = None,
        **data: Any,
    ) -> dict[str, Any]:
        """The fields of an outbox row: the one place every writer's rows are made (build, emit, emit_or_spool)."""
        return {
            "kind": kind,
            "title": title[:200],
            "service_id": service.pk if service else None,
            "subject": subject or (service.name if service else ""),
            "body": body,
            "data": data,
            "created_at": at or timezone.now(),
        }

    @classmethod
    def build(cls, kind: str, title: str, **fields: Any) -> Event:
        """An unsaved row, for bulk_create (the runner writes a round's events in one statement)."""
        service = fields.get("service")
        row = cls(**cls.row(kind, title, **fields))
        if service is not None:
            row.service = service  # keeps the loaded object: no query when the row's service is read
        return row

    @classmethod
    def emit(cls, kind: str, title: str, **fields: Any) -> Event:
        return cls.objects.create(**cls.row(kind, title, **fields))

    @classmethod
    def emit_or_spool(cls, kind: str, title: str, *, retry: bool = True, **fields: Any) -> Event | None:
        """emit(), or spooled (core.spool) when the database cannot be written: replayed with its own
        time. None when spooled."""
        return create_or_spool("health.Event", retry=retry, **cls.row(kind, title, **fields))


class MaintenanceWindow(models.Model):
    """A planned pause for one service or all (service empty): one-off (starts_at, ends_at) or recurring
    (a cron expression, or weekdays + start_time, lasting `duration` minutes, in `timezone`)."""

    name = models.SlugField(max_length=100, unique=True)
    service = models.ForeignKey(
        Service, null=True, blank=True, on_delete=models.CASCADE, related_name="maintenance_windows"
    )
    starts_at = models.DateTimeField(null=True, blank=True, help_text="one-off window: start")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="one-off window: end")
    cron = models.CharField(max_length=100, blank=True, help_text="recurring: minute hour day month weekday")
    weekdays = models.JSONField(default=list, blank=True, help_text="recurring: 0=Monday … 6=Sunday")
    start_time = models.TimeField(null=True, blank=True, help_text="recurring: local start time")
    duration = models.PositiveIntegerField(
        default=60, validators=field_validators(MAINTENANCE_KEYS["duration"]), help_text="recurring: minutes"
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA zone of cron/start_time")
    enabled = models.BooleanField(default=True)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        try:
            validate_window(self)
        except ConfigError as exc:
            raise ValidationError({exc.where or "cron": exc.message}) from None

    def is_active(self, now: datetime) -> bool:
        return window_active(self, now)


class HourlyRollup(models.Model):
    """One service's probe results of one hour (UTC), kept after the raw rows are pruned."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="rollups")
    hour = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    up = models.PositiveIntegerField(default=0)
    degraded = models.PositiveIntegerField(default=0)
    down = models.PositiveIntegerField(default=0)
    # How many of the results above were taken in maintenance (ProbeResult.maintenance), in all and of them
    # degraded and down: uptime and the uptime bar leave them out; up/degraded/down still say what was seen.
    maintenance = models.PositiveIntegerField(default=0, db_default=0)
    maintenance_degraded = models.PositiveIntegerField(default=0, db_default=0)
    maintenance_down = models.PositiveIntegerField(default=0, db_default=0)
    # Of `count`, the `misconfigured` results (in none of up/degraded/down nor maintenance): not counted.
    misconfigured = models.PositiveIntegerField(default=0, db_default=0)
    latency_min = models.FloatField(null=True, blank=True)
    latency_p50 = models.FloatField(null=True, blank=True)
    latency_p95 = models.FloatField(null=True, blank=True)
    latency_max = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-hour"]
        constraints = [models.UniqueConstraint(fields=["service", "hour"], name="one_rollup_per_service_hour")]
        indexes = [models.Index(fields=["hour"], name="rollup_hour")]

    def __str__(self) -> str:
        return f"{self.service_id} @ {self.hour:%Y-%m-%d %H}:00 ({self.count})"
