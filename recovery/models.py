"""Recovery actions configured per service, and a row for every attempt (also the skipped ones)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from health.models import Service
from recovery.actions import registry as action_registry


def action_kinds() -> list[tuple[str, str]]:
    return action_registry.choices()


class RecoveryAction(models.Model):
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="recovery_actions")
    position = models.PositiveIntegerField(default=0, help_text="Actions run in this order.")
    kind = models.CharField(max_length=32, choices=action_kinds)
    settings = models.JSONField(default=dict, blank=True)
    timeout = models.FloatField(default=60.0, help_text="seconds")
    cooldown = models.PositiveIntegerField(default=300, help_text="seconds between attempts")
    verify_delay = models.FloatField(default=5.0, help_text="seconds to wait before re-probing")
    escalate_after = models.PositiveIntegerField(default=3)
    auto = models.BooleanField(
        null=True, blank=True, help_text="Run automatically; unset means: only for critical services."
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["service", "position"]
        constraints = [models.UniqueConstraint(fields=["service", "position"], name="one_action_per_position")]

    def __str__(self) -> str:
        return f"{self.service.name}#{self.position} {self.kind}"


class RecoveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        IN_PROGRESS = "in_progress"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED_COOLDOWN = "skipped_cooldown"
        SKIPPED_ESCALATED = "skipped_escalated"
        SKIPPED_DISABLED = "skipped_disabled"
        ABANDONED = "abandoned"

    class Trigger(models.TextChoices):
        AUTO = "auto"
        MANUAL = "manual"
        API = "api"
        WATCHDOG = "watchdog"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="recovery_attempts")
    action = models.ForeignKey(RecoveryAction, null=True, blank=True, on_delete=models.SET_NULL)
    action_kind = models.CharField(max_length=32, blank=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    outcome = models.CharField(max_length=24, choices=Outcome.choices, default=Outcome.IN_PROGRESS)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_via = models.CharField(max_length=100, blank=True, help_text="e.g. token name, command")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    action_ok = models.BooleanField(null=True, blank=True)
    action_detail = models.TextField(blank=True)
    verified = models.BooleanField(null=True, blank=True)
    verify_detail = models.CharField(max_length=500, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["service", "-started_at"], name="attempt_service_time"),
            models.Index(fields=["outcome", "-started_at"], name="attempt_outcome_time"),
        ]

    def __str__(self) -> str:
        return f"{self.service_id} {self.outcome} @ {self.started_at:%Y-%m-%d %H:%M:%S}"
