"""Public status pages: which services a page lists (under which names), where it is served, what it shows."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

from health.models import Service
from status.spec import HOSTNAME_PATTERN

hostname_validator = RegexValidator(
    HOSTNAME_PATTERN, "must be a host name (lowercase letters, digits, '-' and '.', no port)"
)


class StatusPage(models.Model):
    """A page at /status/<slug>/ (and / on `hostname`): its services' state, uptime, incidents and maintenance."""

    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    services = models.ManyToManyField(Service, through="StatusPageService", blank=True, related_name="status_pages")
    hostname = models.CharField(
        max_length=253,
        blank=True,
        default="",
        validators=[hostname_validator],
        help_text="A custom domain: a request for / with this Host header shows the page (add it to ALLOWED_HOSTS).",
    )
    show_details = models.BooleanField(
        default=False, help_text="Show probe details and incident causes: internal detail, off for a public page."
    )
    public = models.BooleanField(default=True, help_text="Off: only logged-in users see the page.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            # One page a custom domain ("" is no domain, and many pages have none).
            models.UniqueConstraint(
                fields=["hostname"], condition=~models.Q(hostname=""), name="status_page_unique_hostname"
            )
        ]

    def __str__(self) -> str:
        return self.slug

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.hostname = (self.hostname or "").strip().lower()
        super().save(*args, **kwargs)

    def clean_fields(self, exclude=None) -> None:  # type: ignore[no-untyped-def]
        # A Host header's name is case-insensitive: keep it as the middleware compares it, lowercase.
        self.hostname = (self.hostname or "").strip().lower()
        super().clean_fields(exclude)


class StatusPageService(models.Model):
    """One service on a page: its place in the list and the name the page shows for it."""

    page = models.ForeignKey(StatusPage, on_delete=models.CASCADE, related_name="entries")
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="status_page_entries")
    display_name = models.CharField(max_length=200, blank=True, help_text="Shown name; empty: the service's name.")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]
        constraints = [models.UniqueConstraint(fields=["page", "service"], name="status_page_service_once")]

    def __str__(self) -> str:
        return f"{self.page_id}: {self.shown_name}"

    @property
    def shown_name(self) -> str:
        return self.display_name or self.service.name
