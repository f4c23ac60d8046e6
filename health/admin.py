from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from health.admin_forms import KindAdminMixin, KindSettingsForm
from health.models import Event, HourlyRollup, Incident, MaintenanceWindow, ProbeResult, Service, StateChange
from health.probes import registry as probe_registry
from health.spec import SERVICE_KEYS, has_tag


class ServiceForm(KindSettingsForm):
    kind_registry = probe_registry
    common_keys = SERVICE_KEYS


# Set by the portal as it runs, never by a person: shown read-only, folded away.
RUNTIME_FIELDS = (
    "status",
    "state_type",
    "consecutive_failures",
    "consecutive_successes",
    "last_checked_at",
    "latency",
    "last_detail",
    "last_error",
    "status_changed_at",
    "next_due_at",
    "running_since",
    "claimed_by",
    "maintenance_now",
    "flapping_now",
    "flap_share",
    "flap_history",
    "cert_expires_at",
    "ping_uuid",
    "created_at",
    "updated_at",
)
# Columns that are no form field: the runtime ones (some shown by a method: `last_latency_ms` as `latency`);
# `settings` is edited as its kind's keys.
NOT_EDITED = {*RUNTIME_FIELDS, "last_latency_ms", "in_maintenance", "flapping", "flap_percent"}
# Columns shown as a person reads them (whatever list_display names): "28.9 ms", "critical"/"—".
READABLE_COLUMNS = {"last_latency_ms": "latency", "critical": "criticality"}


def format_latency(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.1f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        tags = {t for tags in Service.objects.values_list("tags", flat=True) for t in tags or []}
        return [(t, t) for t in sorted(tags)]

    def queryset(self, request: Any, queryset: Any) -> Any:
        return queryset.filter(has_tag(self.value())) if self.value() else queryset


@admin.register(Service)
class ServiceAdmin(KindAdminMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "status",
        "state_type",
        "critical",
        "enabled",
        "last_latency_ms",
        "last_checked_at",
        "tag_list",
    )
    list_filter = ("kind", "status", "critical", "enabled", "paused", TagFilter)
    search_fields = ("name", "description", "last_detail", "tags")

    @admin.display(description="tags")
    def tag_list(self, obj: Service) -> str:
        return ", ".join(obj.tags or [])

    filter_horizontal = ("depends_on",)
    form = ServiceForm
    kind_base = ServiceForm
    kind_table = "[[service]]"
    readonly_fields = RUNTIME_FIELDS

    def get_list_display(self, request: HttpRequest) -> list[str]:
        return [READABLE_COLUMNS.get(name, name) for name in super().get_list_display(request)]

    @admin.display(description="latency", ordering="last_latency_ms")
    def latency(self, service: Service) -> str:
        return format_latency(service.last_latency_ms)

    # Read-only flags as words: Django's red ✖ reads as an error where "no" is the normal state.
    @admin.display(description="in maintenance")
    def maintenance_now(self, service: Service) -> str:
        return "in a maintenance window" if service.in_maintenance else "no"

    @admin.display(description="flapping")
    def flapping_now(self, service: Service) -> str:
        return "flapping" if service.flapping else "no"

    @admin.display(description="flap percent")
    def flap_share(self, service: Service) -> str:
        return f"{service.flap_percent:.1f} %"

    @admin.display(description="critical", ordering="critical")
    def criticality(self, service: Service) -> str:
        return "critical" if service.critical else "—"

    def get_fieldsets(self, request: HttpRequest, obj: Service | None = None) -> Any:
        fieldsets = self.kind_fieldsets(request, obj, self.config_fields(NOT_EDITED))
        if obj is not None:
            fieldsets.append(("Runtime (read-only)", {"classes": ("collapse",), "fields": RUNTIME_FIELDS}))
        return fieldsets


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
