from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.mask import mask
from notify.models import Channel, Delivery
from notify.outbox import send_test


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
