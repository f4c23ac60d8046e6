from __future__ import annotations

from django.contrib import admin

from recovery.models import RecoveryAction, RecoveryAttempt


@admin.register(RecoveryAction)
class RecoveryActionAdmin(admin.ModelAdmin):
    list_display = ("service", "position", "kind", "timeout", "cooldown", "escalate_after", "auto", "enabled")
    list_filter = ("kind", "enabled", "auto")
    search_fields = ("service__name",)
    list_select_related = ("service",)


@admin.register(RecoveryAttempt)
class RecoveryAttemptAdmin(admin.ModelAdmin):
    list_display = ("service", "started_at", "trigger", "outcome", "action_kind", "duration_ms", "detail")
    list_filter = ("outcome", "trigger", "action_kind", "service")
    search_fields = ("service__name", "detail", "action_detail")
    list_select_related = ("service",)
    date_hierarchy = "started_at"
