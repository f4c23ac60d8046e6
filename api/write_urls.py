"""The write API (/api/v1/…): token or session, each endpoint checking its permission."""

from __future__ import annotations

from django.urls import path

from api import write

app_name = "api-v1"

urlpatterns: list = [
    path("incidents/<int:pk>/updates", write.incident_updates, name="incident-updates"),
]
