"""Notification channels (apprise URLs with filters) and the deliveries of outbox events to them."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from core.spec import field_validators
from health.models import Event, Service
from notify.spec import CHANNEL_KEYS


class Channel(models.Model):
    """Where notifications go: an apprise URL (`${VAR}` references expanded at send time), with filters."""

    name = models.SlugField(max_length=100, unique=True)
    url = models.CharField(
        max_length=1000, help_text="An apprise URL; put secrets in environment variables: json://host/${TOKEN}"
    )
    events = models.JSONField(default=list, blank=True, help_text="Event kinds to send; empty: all.")
    services = models.ManyToManyField(
        Service, blank=True, related_name="channels", help_text="Services whose events to send; none: all."
    )
    remind_every = models.PositiveIntegerField(
        default=0,
        validators=field_validators(CHANNEL_KEYS["remind_every"]),
        help_text="seconds between reminders while an incident stays open; 0: off",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        db_table = "health_channel"  # made by health's migrations; moved here with its rows

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        unknown = [k for k in self.events or [] if k not in Event.Kind.values]
        if not isinstance(self.events, list) or unknown:
            raise ValidationError({"events": "unknown event kind(s): " + ", ".join(map(str, unknown or [self.events]))})

    def wants(self, event: Event, service_ids: set[int] | None = None) -> bool:
        """This channel's filters: the event kind, and the service (events about no service pass)."""
        if self.events and event.kind not in self.events:
            return False
        if event.service_id is None or service_ids is None:
            return True
        return not service_ids or event.service_id in service_ids


class Delivery(models.Model):
    """One event sent (or being retried, or held) to one channel. `error` is scrubbed of secrets."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        HELD = "held"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        db_table = "health_delivery"  # made by health's migrations; moved here with its rows
        constraints = [models.UniqueConstraint(fields=["channel", "event"], name="one_delivery_per_channel_event")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.event.kind} -> {self.channel.name}: {self.status}"

    @property
    def success(self) -> bool:
        return self.status == self.Status.SENT
