"""Public status pages (/status/<slug>/…) and badges (/badge/…), mounted by opsportal/urls.py."""

from __future__ import annotations

page_urlpatterns: list = []
page_urls = (page_urlpatterns, "status")

badge_urlpatterns: list = []
badge_urls = (badge_urlpatterns, "badge")
