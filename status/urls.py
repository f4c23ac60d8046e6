"""Public status pages (/status/<slug>/…) and badges (/badge/…), mounted by opsportal/urls.py."""

from __future__ import annotations

from django.urls import path, re_path

from status import views

page_urlpatterns = [
    path("<slug:slug>/", views.page, name="page"),
    path("<slug:slug>/summary.json", views.summary, name="summary"),
    path("<slug:slug>/feed.atom", views.feed, name="feed"),
]
page_urls = (page_urlpatterns, "status")

# A service name is a slug (health.models.Service.name), so `.svg` and `.json` cannot be part of it.
badge_urlpatterns = [
    re_path(r"^(?P<name>[a-z0-9][a-z0-9_-]*)\.svg$", views.badge_svg, name="state"),
    re_path(r"^(?P<name>[a-z0-9][a-z0-9_-]*)\.json$", views.badge_json, name="endpoint"),
    re_path(r"^(?P<name>[a-z0-9][a-z0-9_-]*)/uptime-(?P<window>24h|7d|30d)\.svg$", views.badge_svg, name="uptime"),
]
badge_urls = (badge_urlpatterns, "badge")
