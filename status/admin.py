from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from status.models import StatusPage, StatusPageService


class StatusPageServiceInline(admin.TabularInline):
    model = StatusPageService
    extra = 1
    fields = ("position", "service", "display_name")
    autocomplete_fields = ("service",)


@admin.register(StatusPage)
class StatusPageAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "public", "show_details", "hostname", "service_count", "view_link")
    list_filter = ("public", "show_details")
    search_fields = ("slug", "title", "hostname")
    inlines = [StatusPageServiceInline]
    fieldsets = (
        (None, {"fields": ("slug", "title", "description")}),
        ("Who sees it, and where", {"fields": ("public", "hostname")}),
        (
            "Internal detail",
            {
                "fields": ("show_details",),
                "description": "On: probe details, incident causes and maintenance reasons are shown on the page.",
            },
        ),
    )

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).prefetch_related("entries")

    @admin.display(description="services")
    def service_count(self, page: StatusPage) -> int:
        return len(page.entries.all())

    @admin.display(description="page")
    def view_link(self, page: StatusPage) -> str:
        return format_html('<a href="{}">view</a>', reverse("status:page", args=[page.slug]))
