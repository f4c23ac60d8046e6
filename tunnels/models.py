"""Tunnels (a connector process such as cloudflared) and a row for every watchdog event."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone

from core.named import NamedQuerySet
from core.spec import field_validators
from tunnels.spec import TUNNEL_KEYS


class Tunnel(models.Model):
    class Status(models.TextChoices):
        UNKNOWN = "unknown"
        UP = "up"
        NOT_READY = "not_ready"
        DOWN = "down"
        SUPPRESSED = "suppressed"

    # The row fields a watchdog check writes (its state, read-only in the admin); claim fields are not among them.
    STATE_FIELDS = (
        "status",
        "pid",
        "pid_create_time",
        "ready_connections",
        "consecutive_ready_failures",
        "last_checked_at",
        "last_restart_at",
        "last_detail",
    )

    name = models.SlugField(max_length=100, unique=True)
    command = models.JSONField(help_text="argv list that starts the connector (never a shell string)")
    # Variables for the connector's environment: a token goes here, not in argv, which `ps` shows everyone.
    env = models.JSONField(
        default=dict,
        blank=True,
        help_text='extra environment of the connector, e.g. {"TUNNEL_TOKEN": "${CLOUDFLARE_TUNNEL_TOKEN}"}; '
        "${VAR} is expanded only when the connector starts",
    )
    process_match = models.CharField(max_length=200, blank=True)
    ready_url = models.CharField(max_length=500, blank=True)
    public_url = models.CharField(max_length=500, blank=True)
    # Validators from the config keys (tunnels.spec): the admin refuses what the file import refuses.
    check_interval = models.PositiveIntegerField(default=30, validators=field_validators(TUNNEL_KEYS["check_interval"]))
    max_restarts_per_hour = models.PositiveIntegerField(
        default=5, validators=field_validators(TUNNEL_KEYS["max_restarts_per_hour"])
    )
    ready_failure_threshold = models.PositiveIntegerField(
        default=2, validators=field_validators(TUNNEL_KEYS["ready_failure_threshold"])
    )
    startup_timeout = models.FloatField(
        default=30.0,
        validators=field_validators(TUNNEL_KEYS["startup_timeout"]),
        help_text="seconds a restarted connector has to become ready",
    )
    settle_seconds = models.FloatField(
        default=2.0,
        validators=field_validators(TUNNEL_KEYS["settle_seconds"]),
        help_text="seconds a started connector must stay alive",
    )
    log_file = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)

    # Current state
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNKNOWN)
    pid = models.PositiveIntegerField(null=True, blank=True)
    pid_create_time = models.FloatField(null=True, blank=True)
    ready_connections = models.PositiveIntegerField(null=True, blank=True)
    consecutive_ready_failures = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_restart_at = models.DateTimeField(null=True, blank=True)
    last_detail = models.CharField(max_length=500, blank=True)
    next_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    running_since = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The rolling window of the restart limit (max_restarts_per_hour).
    RESTART_WINDOW = timedelta(hours=1)

    objects = NamedQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def restarts_in_window(self) -> int:
        """Restart attempts (succeeded or failed) in the last rolling hour, from the event rows."""
        since = timezone.now() - self.RESTART_WINDOW
        return self.events.filter(kind__in=TunnelEvent.RESTART_KINDS, created_at__gt=since).count()

    def suppression_notified(self) -> bool:
        """Whether a restart_suppressed event was recorded in the last rolling hour."""
        since = timezone.now() - self.RESTART_WINDOW
        return self.events.filter(kind=TunnelEvent.Kind.RESTART_SUPPRESSED, created_at__gt=since).exists()


class TunnelEvent(models.Model):
    class Kind(models.TextChoices):
        CHECK_OK = "check_ok"
        PROCESS_MISSING = "process_missing"
        NOT_READY = "not_ready"
        ORIGIN_UNREACHABLE = "origin_unreachable"
        RESTARTED = "restarted"
        RESTART_FAILED = "restart_failed"
        RESTART_SUPPRESSED = "restart_suppressed"

    # What the hourly restart limit counts: every attempt, so a crash loop is held too.
    RESTART_KINDS = (Kind.RESTARTED, Kind.RESTART_FAILED)

    tunnel = models.ForeignKey(Tunnel, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    pid = models.PositiveIntegerField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tunnel", "-created_at"], name="event_tunnel_time"),
            models.Index(fields=["tunnel", "kind", "-created_at"], name="event_tunnel_kind_time"),
        ]

    def __str__(self) -> str:
        return f"{self.tunnel_id} {self.kind} @ {self.created_at:%Y-%m-%d %H:%M:%S}"
