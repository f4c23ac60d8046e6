from __future__ import annotations

from django.contrib import admin

from health.models import ApiToken, Incident, ProbeResult, Service, StateChange


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
    list_display = ("service", "checked_at", "status", "latency_ms", "detail")
    list_filter = ("status", "service")
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
    readonly_fields = ("prefix", "token_hash", "created_at", "last_used_at")
    exclude = ("token_hash",)
