from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from tunnels import watchdog
from tunnels.models import Tunnel, TunnelEvent

RECENT_EVENTS = 15


@admin.register(Tunnel)
class TunnelAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "status",
        "pid",
        "ready_connections",
        "restarts_last_hour",
        "last_event",
        "last_checked_at",
        "last_restart_at",
        "enabled",
    )
    list_filter = ("status", "enabled")
    search_fields = ("name", "process_match")
    actions = ("check_now", "restart_now")
    readonly_fields = (
        *Tunnel.STATE_FIELDS,
        "next_due_at",
        "running_since",
        "recent_events",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tunnel]:
        # The list's event columns come from annotations: a constant number of queries per page.
        latest = TunnelEvent.objects.filter(tunnel=OuterRef("pk")).order_by("-created_at", "-pk")
        since = timezone.now() - Tunnel.RESTART_WINDOW
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_event_kind=Subquery(latest.values("kind")[:1]),
                last_event_at=Subquery(latest.values("created_at")[:1]),
                restarts_hour=Count(
                    "events", filter=Q(events__kind__in=TunnelEvent.RESTART_KINDS, events__created_at__gt=since)
                ),
            )
        )

    @admin.action(description="Check the selected tunnels now", permissions=("change",))
    def check_now(self, request: HttpRequest, queryset: QuerySet[Tunnel]) -> None:
        for tunnel in queryset.filter(enabled=True):
            result = watchdog.check_now(tunnel)
            if result is None:
                self.message_user(request, f"{tunnel.name}: being checked by another watchdog", messages.WARNING)
            else:
                level = messages.SUCCESS if result.status == Tunnel.Status.UP else messages.WARNING
                self.message_user(request, result.summary(), level)

    @admin.action(description="Restart the selected tunnels (within the hourly limit)", permissions=("change",))
    def restart_now(self, request: HttpRequest, queryset: QuerySet[Tunnel]) -> None:
        for tunnel in queryset:
            ok, detail = watchdog.restart(tunnel.name, f"requested by {request.user.get_username()} in the admin")
            self.message_user(request, f"{tunnel.name}: {detail}", messages.SUCCESS if ok else messages.ERROR)

    @admin.display(description="restarts (1 h)", ordering="restarts_hour")
    def restarts_last_hour(self, obj: Tunnel) -> str:
        return f"{obj.restarts_hour} / {obj.max_restarts_per_hour}"

    @admin.display(description="last event", ordering="last_event_at")
    def last_event(self, obj: Tunnel) -> str:
        if not obj.last_event_kind:
            return "-"
        return f"{obj.last_event_kind} @ {timezone.localtime(obj.last_event_at):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="recent events")
    def recent_events(self, obj: Tunnel) -> str:
        events = obj.events.order_by("-created_at", "-pk")[:RECENT_EVENTS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((f"{timezone.localtime(e.created_at):%Y-%m-%d %H:%M:%S}", e.kind, e.pid or "", e.detail) for e in events),
        )
        return format_html("<table><tr><th>time</th><th>event</th><th>pid</th><th>detail</th></tr>{}</table>", rows)


@admin.register(TunnelEvent)
class TunnelEventAdmin(admin.ModelAdmin):
    list_display = ("tunnel", "created_at", "kind", "pid", "detail")
    list_filter = ("kind", "tunnel")
    search_fields = ("tunnel__name", "detail")
    list_select_related = ("tunnel",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # events are written by the watchdog only

    def has_change_permission(self, request: HttpRequest, obj: TunnelEvent | None = None) -> bool:
        return False
