"""API credentials: bearer tokens, stored as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """A bearer token for the JSON API; only its SHA-256 hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to tell tokens apart.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    TOUCH_EVERY_SECONDS = 60

    class Meta:
        ordering = ["-created_at"]
        db_table = "health_apitoken"  # made by health's migrations; moved here with its rows

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or self.user})"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, user: Any, name: str = "") -> tuple[ApiToken, str]:
        """Create a token; the clear text is returned once and never stored."""
        token = "ops_" + secrets.token_urlsafe(32)
        row = cls.objects.create(user=user, name=name, prefix=token[:10], token_hash=cls.hash(token))
        return row, token

    @classmethod
    def authenticate(cls, token: str) -> ApiToken | None:
        """The live token row for a clear-text token (of an active user), or None.

        Looked up by its hash, then compared in constant time so the answer leaks nothing of the hash.
        """
        digest = cls.hash(token)
        row = cls.objects.select_related("user").filter(token_hash=digest).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        if row.is_revoked or not row.user.is_active:
            return None
        return row

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def touch(self, now: datetime | None = None) -> None:
        """Record a use; at most one write a minute, so a frequent poller does not write on every request."""
        now = now or timezone.now()
        if self.last_used_at is None or (now - self.last_used_at).total_seconds() >= self.TOUCH_EVERY_SECONDS:
            self.last_used_at = now
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
