from __future__ import annotations

from django.contrib import admin

from tunnels.models import Tunnel, TunnelEvent


class TunnelEventInline(admin.TabularInline):
    model = TunnelEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "kind", "pid", "detail")
    ordering = ("-created_at",)
    max_num = 0

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        qs = super().get_queryset(request)
        return qs.order_by("-created_at")


@admin.register(Tunnel)
class TunnelAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "pid", "last_checked_at", "last_restart_at", "enabled")
    list_filter = ("status", "enabled")
    search_fields = ("name", "process_match")
    readonly_fields = (
        "status",
        "pid",
        "pid_create_time",
        "ready_connections",
        "consecutive_ready_failures",
        "last_checked_at",
        "last_restart_at",
        "last_detail",
        "next_due_at",
        "running_since",
    )
    inlines = [TunnelEventInline]


@admin.register(TunnelEvent)
class TunnelEventAdmin(admin.ModelAdmin):
    list_display = ("tunnel", "created_at", "kind", "pid", "detail")
    list_filter = ("kind", "tunnel")
    search_fields = ("tunnel__name", "detail")
    list_select_related = ("tunnel",)
