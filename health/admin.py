from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from health.models import (
    ApiToken,
    Channel,
    Delivery,
    Event,
    HourlyRollup,
    Incident,
    MaintenanceWindow,
    ProbeResult,
    Service,
    StateChange,
)
from health.reports import mask


def guard_unchecked_actions(site: admin.AdminSite = admin.site) -> list[str]:
    """Give every registered admin action that declares no permissions `permissions=("change",)`.

    Django offers an action that declares none to anyone who may view the list (a view-only user could
    resubmit Django-Q2's tasks or clean django-axes' attempts). The portal's own actions declare theirs;
    this covers the libraries'. Called once every admin module is loaded (the end of tunnels/admin.py,
    the last app); returns the actions it guarded, e.g. "django_q.Success.resubmit_task".
    """
    guarded = []
    for model, model_admin in site._registry.items():
        for func, name, _description in model_admin._get_base_actions():
            if not hasattr(func, "allowed_permissions"):
                target: Callable = getattr(func, "__func__", func)
                target.allowed_permissions = ("change",)  # type: ignore[attr-defined]
                guarded.append(f"{model._meta.label}.{name}")
    return guarded


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "status", "state_type", "critical", "enabled", "last_latency_ms", "last_checked_at")
    list_filter = ("kind", "status", "critical", "enabled", "paused")
    search_fields = ("name", "description", "last_detail")
    filter_horizontal = ("depends_on",)
    readonly_fields = (
        "status",
        "state_type",
        "consecutive_failures",
        "consecutive_successes",
        "last_checked_at",
        "last_latency_ms",
        "last_detail",
        "last_error",
        "status_changed_at",
        "next_due_at",
        "running_since",
        "created_at",
        "updated_at",
    )


@admin.register(ProbeResult)
class ProbeResultAdmin(admin.ModelAdmin):
    list_display = ("service", "checked_at", "status", "maintenance", "latency_ms", "detail")
    list_filter = ("status", "maintenance", "service")
    search_fields = ("service__name", "detail")
    date_hierarchy = "checked_at"
    list_select_related = ("service",)


@admin.register(StateChange)
class StateChangeAdmin(admin.ModelAdmin):
    list_display = ("service", "created_at", "old_status", "old_type", "new_status", "new_type", "detail")
    list_filter = ("new_status", "service")
    search_fields = ("service__name", "detail")
    list_select_related = ("service",)


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("service", "opened_at", "severity", "acknowledged_at", "resolved_at", "cause")
    list_filter = ("severity", ("resolved_at", admin.EmptyFieldListFilter), "service")
    search_fields = ("service__name", "cause", "last_error")
    list_select_related = ("service",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    # Only the prefix is ever shown; the token itself is not stored.
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    exclude = ("token_hash",)
    actions = ["revoke_tokens"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Tokens come only from `manage.py createapitoken`, which shows the clear text once.
        return False

    @admin.action(description="Revoke selected tokens", permissions=("change",))
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token.revoke()
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).")


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "shown_url", "event_kinds", "remind_every", "enabled")
    list_filter = ("enabled",)
    search_fields = ("name",)
    filter_horizontal = ("services",)
    actions = ["send_test_notification"]

    @admin.display(description="URL")
    def shown_url(self, channel: Channel) -> str:
        # `${VAR}` references are shown as written; a literal secret in a URL is masked.
        return mask(channel.url, "url") if "${" not in channel.url else channel.url

    @admin.display(description="events")
    def event_kinds(self, channel: Channel) -> str:
        return ", ".join(channel.events) if channel.events else "all"

    # It writes an event and a delivery and sends to the channel: for those who may configure channels.
    @admin.action(description="Send test notification", permissions=("change",))
    def send_test_notification(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        from health.notify import send_test

        for channel in queryset:
            delivery = send_test(channel, user=request.user.get_username())
            if delivery.success:
                self.message_user(request, f"{channel.name}: test notification sent", messages.SUCCESS)
            else:
                self.message_user(request, f"{channel.name}: sending failed: {delivery.error}", messages.ERROR)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "channel", "event_kind", "event", "status", "attempts", "sent_at", "error")
    list_filter = ("status", "channel", "event__kind")
    search_fields = ("event__title", "error", "channel__name")
    list_select_related = ("channel", "event")
    readonly_fields = [f.name for f in Delivery._meta.fields]

    @admin.display(description="kind")
    def event_kind(self, delivery: Delivery) -> str:
        return delivery.event.kind

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "subject", "title", "processed_at")
    list_filter = ("kind",)
    search_fields = ("title", "subject", "body")
    readonly_fields = [f.name for f in Event._meta.fields]


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    list_display = ("name", "service", "schedule", "timezone", "enabled", "active_now")
    list_filter = ("enabled",)
    search_fields = ("name", "reason")

    @admin.display(description="when")
    def schedule(self, window: MaintenanceWindow) -> str:
        if window.starts_at:
            return f"{window.starts_at:%Y-%m-%d %H:%M} → {window.ends_at:%Y-%m-%d %H:%M}"
        if window.cron:
            return f"cron {window.cron} for {window.duration} min"
        days = ",".join(map(str, window.weekdays)) if window.weekdays else "daily"
        return f"{days} {window.start_time:%H:%M} for {window.duration} min"

    @admin.display(description="active now", boolean=True)
    def active_now(self, window: MaintenanceWindow) -> bool:
        return window.is_active(timezone.now())


@admin.register(HourlyRollup)
class HourlyRollupAdmin(admin.ModelAdmin):
    list_display = ("service", "hour", "count", "up", "degraded", "down", "maintenance", "latency_p50", "latency_p95")
    list_filter = ("service",)
    date_hierarchy = "hour"
    list_select_related = ("service",)
