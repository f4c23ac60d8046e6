"""The write API (/api/v1/…): token or session, each endpoint checking its permission."""

from __future__ import annotations

app_name = "api-v1"

urlpatterns: list = []
