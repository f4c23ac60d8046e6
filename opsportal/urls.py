from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from health.views import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("health/", include("health.urls")),
    path("metrics", metrics, name="metrics"),
    path("", include("health.dashboard_urls")),
]
