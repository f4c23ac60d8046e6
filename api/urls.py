from __future__ import annotations

from django.urls import path, re_path, register_converter

from api import ping, views

app_name = "health"

urlpatterns = [
    path("live", views.live, name="live"),
    path("ready", views.ready, name="ready"),
    path("status", views.status, name="status"),
    path("recovery-stats", views.recovery_stats, name="recovery-stats"),
    path("recover", views.recover, name="recover"),
    path("incidents", views.incidents, name="incidents"),
    path("incidents/<int:pk>", views.incident, name="incident"),
    path("uptime", views.uptime, name="uptime"),
    path("openapi.json", views.openapi, name="openapi"),
    # Last: anything else under /health/ is a JSON 404.
    re_path(r"^.*$", views.not_found),
]


class PingAction:
    """`start`, `fail`, `log` or an exit status (digits; the view answers 400 past 255)."""

    regex = "start|fail|log|[0-9]{1,9}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(PingAction, "ping_action")

# Heartbeat pings (api.ping), mounted at the site root by opsportal/urls.py: `path("ping/", include(ping_urls))`.
ping_urlpatterns = [
    path("<uuid:ping_uuid>", ping.ping, name="ping"),
    path("<uuid:ping_uuid>/<ping_action:action>", ping.ping, name="ping-action"),
    path("<str:ping_key>/<slug:name>", ping.ping_by_name, name="ping-by-name"),
    path("<str:ping_key>/<slug:name>/<ping_action:action>", ping.ping_by_name, name="ping-by-name-action"),
]
ping_urls = (ping_urlpatterns, "ping")
