from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from health.admin_forms import KindAdminMixin, KindSettingsForm
from health.permissions import RUN_RECOVERY, allowed
from recovery.actions import registry as action_registry
from recovery.engine import recover_services
from recovery.models import RecoveryAction, RecoveryAttempt, RecoveryState
from recovery.spec import RECOVERY_KEYS


class RecoveryActionForm(KindSettingsForm):
    kind_registry = action_registry
    common_keys = RECOVERY_KEYS

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        service = cleaned.get("service")
        # The cross-table rule importconfig checks too (configfile.config.parse), in its words.
        if self.kind == "restart_process" and service is not None and service.kind != "process":
            self.add_error("kind", "restart_process needs a service of kind process")
        return cleaned


@admin.register(RecoveryAction)
class RecoveryActionAdmin(KindAdminMixin, admin.ModelAdmin):
    list_display = ("service", "position", "kind", "timeout", "cooldown", "escalate_after", "auto", "enabled")
    list_filter = ("kind", "enabled", "auto")
    search_fields = ("service__name",)
    list_select_related = ("service",)
    form = RecoveryActionForm
    kind_base = RecoveryActionForm
    kind_table = "[[service.recovery]]"

    def get_fieldsets(self, request: HttpRequest, obj: RecoveryAction | None = None) -> Any:
        return self.kind_fieldsets(request, obj, self.config_fields(set()))


@admin.register(RecoveryAttempt)
class RecoveryAttemptAdmin(admin.ModelAdmin):
    """History is data: attempts are read-only here (their details are already scrubbed of secrets)."""

    list_display = ("service", "started_at", "trigger", "outcome", "action_kind", "verified", "duration_ms", "detail")
    list_filter = ("outcome", "trigger", "action_kind", "service")
    search_fields = ("service__name", "detail", "action_detail")
    list_select_related = ("service",)
    date_hierarchy = "started_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RecoveryAttempt | None = None) -> bool:
        return False


@admin.register(RecoveryState)
class RecoveryStateAdmin(admin.ModelAdmin):
    list_display = ("service", "consecutive_failures", "next_allowed_at", "escalated_at", "running_since")
    list_filter = ("escalated_at",)
    list_select_related = ("service",)
    readonly_fields = ("running_since", "last_attempt_at", "last_finished_at", "cooldown")
    actions = ["recover_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_run_recovery_permission(self, request: HttpRequest) -> bool:
        return allowed(request.user, RUN_RECOVERY)

    @admin.action(description="Recover now (honours cooldown and escalation)", permissions=("run_recovery",))
    def recover_now(self, request: HttpRequest, queryset: QuerySet[RecoveryState]) -> None:
        names = list(queryset.values_list("service__name", flat=True))
        results = recover_services(names, trigger="manual", user=request.user, via="admin")
        for r in results:
            level = messages.SUCCESS if r.success else messages.WARNING
            self.message_user(request, f"{r.service}: {r.outcome} {r.reason or r.detail}", level)
