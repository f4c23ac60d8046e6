"""The write API (/api/v1/…): token or session, each endpoint checking its permission."""

from __future__ import annotations

from django.urls import path, re_path

from api import views, write

app_name = "api-v1"

urlpatterns: list = [
    path("incidents/<int:pk>/updates", write.incident_updates, name="incident-updates"),
    # Last: anything else under /api/v1/ is a JSON 404, as under /health/.
    re_path(r"^.*$", views.not_found),
]
