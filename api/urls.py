from __future__ import annotations

from django.urls import path, re_path

from api import views

app_name = "health"

urlpatterns = [
    path("live", views.live, name="live"),
    path("ready", views.ready, name="ready"),
    path("status", views.status, name="status"),
    path("recovery-stats", views.recovery_stats, name="recovery-stats"),
    path("recover", views.recover, name="recover"),
    path("incidents", views.incidents, name="incidents"),
    path("uptime", views.uptime, name="uptime"),
    path("openapi.json", views.openapi, name="openapi"),
    # Last: anything else under /health/ is a JSON 404.
    re_path(r"^.*$", views.not_found),
]
