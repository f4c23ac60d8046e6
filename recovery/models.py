"""Recovery actions configured per service, and a row for every attempt (also the skipped ones)."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.spec import field_validators
from core.spool import create_or_spool, update_or_spool
from health.models import Service
from health.probes.push import verify_wait
from recovery.actions import registry as action_registry
from recovery.actions.base import stale_bound_problem
from recovery.spec import RECOVERY_KEYS


def action_kinds() -> list[tuple[str, str]]:
    return action_registry.choices()


class RecoveryAction(models.Model):
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="recovery_actions")
    position = models.PositiveIntegerField(default=0, help_text="Actions run in this order.")
    kind = models.CharField(max_length=32, choices=action_kinds)
    settings = models.JSONField(default=dict, blank=True)
    # Validators from the config keys (recovery.spec): the admin refuses what the file import refuses.
    timeout = models.FloatField(
        default=60.0, validators=field_validators(RECOVERY_KEYS["timeout"]), help_text="seconds"
    )
    cooldown = models.PositiveIntegerField(
        default=300, validators=field_validators(RECOVERY_KEYS["cooldown"]), help_text="seconds between attempts"
    )
    verify_delay = models.FloatField(
        default=5.0,
        validators=field_validators(RECOVERY_KEYS["verify_delay"]),
        help_text="seconds to wait before re-probing",
    )
    escalate_after = models.PositiveIntegerField(
        default=3, validators=field_validators(RECOVERY_KEYS["escalate_after"])
    )
    auto = models.BooleanField(
        null=True, blank=True, help_text="Run automatically; unset means: only for critical services."
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["service", "position"]
        constraints = [models.UniqueConstraint(fields=["service", "position"], name="one_action_per_position")]

    def __str__(self) -> str:
        return f"{self.service.name}#{self.position} {self.kind}"

    def clean(self) -> None:
        super().clean()
        service = getattr(self, "service", None) if self.service_id else None
        wait = verify_wait(service.kind, service.settings) if service is not None else 0.0
        problem = stale_bound_problem(self.timeout, self.verify_delay, wait)
        if problem:
            raise ValidationError({"timeout": problem})


class RecoveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        IN_PROGRESS = "in_progress"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED_COOLDOWN = "skipped_cooldown"
        SKIPPED_ESCALATED = "skipped_escalated"
        SKIPPED_DISABLED = "skipped_disabled"
        SKIPPED_BUSY = "skipped_busy"  # another attempt at the same service was running
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
    action_data = models.JSONField(default=dict, blank=True, help_text="e.g. pids stopped and started")
    # What the restart destroyed, captured before it (recovery.evidence): process tree, log tails, probe details.
    evidence = models.JSONField(default=dict, blank=True)
    verified = models.BooleanField(null=True, blank=True)
    verify_detail = models.CharField(max_length=500, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    # The process that runs the attempt (recovery.owner): its heartbeat says whether the attempt is alive.
    owner = models.CharField(max_length=100, blank=True, editable=False)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["service", "-started_at"], name="attempt_service_time"),
            models.Index(fields=["outcome", "-started_at"], name="attempt_outcome_time"),
        ]
        # By hand: the dashboard's Recover, POST /health/recover, the admin's "Recover now".
        permissions = [("run_recovery", "Can run recovery by hand")]

    def __str__(self) -> str:
        return f"{self.service_id} {self.outcome} @ {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def skipped(self) -> bool:
        return self.outcome.startswith("skipped_")

    def finish(self, outcome: str, now: datetime, **fields: Any) -> bool:
        """Store the final outcome; False when another writer had already finished the row (it is kept,
        and this instance reloaded with it) or when the write was spooled."""
        self.outcome = outcome
        self.finished_at = now
        self.duration_ms = round((now - self.started_at).total_seconds() * 1000, 1)
        for name, value in fields.items():
            setattr(self, name, value)
        return self.store()

    def store(self) -> bool:
        """Write the row now, or spool it (core.spool) when the database cannot be written: an
        attempt in flight when the database goes away keeps its outcome. False when spooled, or when the
        row already has a final outcome.

        A row never inserted (its first write failed) is created with all its fields; one that was is
        updated by pk, every field, but only while it is still `in_progress` (also when replayed): a final
        outcome, written by a takeover (`abandoned`) or any other writer, is never overwritten by an older one.
        """
        fields = {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields if not f.primary_key}
        if self.pk is None:
            row = create_or_spool("recovery.RecoveryAttempt", **fields)
            if row is None:
                return False
            self.pk = row.pk
            self._state.adding = False
            return True
        where = {"outcome": self.Outcome.IN_PROGRESS}
        done = update_or_spool("recovery.RecoveryAttempt", self.pk, fields, where=where)
        if done == 0:
            # The final outcome another writer stored is the truth (gone: the service was deleted meanwhile).
            with contextlib.suppress(RecoveryAttempt.DoesNotExist):
                self.refresh_from_db()
            return False
        return done is not None


class RecoveryState(models.Model):
    """Per service: the one-at-a-time claim, the backoff counters and the escalation stop.

    Every decision that must hold across processes is a conditional UPDATE on this row.
    """

    service = models.OneToOneField(Service, on_delete=models.CASCADE, primary_key=True, related_name="recovery_state")
    running_since = models.DateTimeField(null=True, blank=True, help_text="set while an attempt runs (the claim)")
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    # Who holds the claim (recovery.owner): while its heartbeat beats the claim holds, whatever its age.
    claimed_by = models.CharField(max_length=100, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_allowed_at = models.DateTimeField(null=True, blank=True, help_text="cooldown/backoff: no attempt before")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True, help_text="auto-recovery stopped since")
    cooldown = models.PositiveIntegerField(default=300, help_text="base cooldown of the last attempt, seconds")

    class Meta:
        verbose_name = "recovery state"

    def __str__(self) -> str:
        suffix = " (escalated)" if self.escalated_at else ""
        return f"{self.service_id}: {self.consecutive_failures} failures{suffix}"

    @classmethod
    def for_service(cls, service: Service) -> RecoveryState:
        # get_or_create retries the read when a concurrent insert wins the unique key.
        state, _ = cls.objects.select_related("service").get_or_create(service=service)
        return state

    def claim(self, now: datetime, where: Q, *, cooldown: int, owner: str = "") -> str | None:
        """Take the service's one slot with a conditional UPDATE; None when another holds it or policy forbids.

        The row count is the truth: of any number of concurrent callers exactly one gets 1.
        Cooldown starts now, so even an attempt whose process dies leaves its cooldown behind.
        `owner` (recovery.owner) must be beating already: a claim is taken over only once its owner is dead.
        """
        token = uuid.uuid4().hex
        claimed = (
            RecoveryState.objects.filter(pk=self.pk)
            .filter(where)
            .update(
                running_since=now,
                claim_token=token,
                claimed_by=owner,
                last_attempt_at=now,
                cooldown=cooldown,
                next_allowed_at=now + timedelta(seconds=cooldown),
            )
        )
        if claimed != 1:
            return None
        self.refresh_from_db()
        return token

    def release(self, token: str, **fields: Any) -> bool:
        """Free the slot and store the outcome's counters; a no-op if the claim was taken over as stale.

        When the database cannot be written the release is spooled as a conditional `update` (still only
        while our token holds the claim) and replayed in order; True then, as it will be applied.
        """
        fields.update(running_since=None, claim_token="", claimed_by="")
        done = update_or_spool("recovery.RecoveryState", self.pk, fields, where={"claim_token": token})
        for name, value in fields.items():
            setattr(self, name, value)
        return done is None or bool(done)
