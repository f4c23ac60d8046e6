from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path

from api.urls import ping_urls
from api.views import metrics
from status.urls import badge_urls, page_urls

# Of django.contrib.auth's views only these: the password-reset ones would mail a link, and the portal
# sends no mail (an operator resets a password with `manage.py changepassword` or in the admin).
account_urls = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links: the icon (by its hashed name once collected)."""
    return redirect(static("favicon.svg"))


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/", include(account_urls)),
    path("health/", include("api.urls")),
    path("api/v1/", include("api.write_urls")),
    path("metrics", metrics, name="metrics"),
    # Heartbeats from jobs (Healthchecks.io-style URLs; api.ping).
    path("ping/", include(ping_urls)),
    # Public faces: status pages and badges (status app; no login unless a page is private).
    path("status/", include(page_urls)),
    path("badge/", include(badge_urls)),
    path("", include("dashboard.urls")),
]
