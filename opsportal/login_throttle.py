"""Login throttling around django-axes: the client address it counts failures by, and the log lines.

Every failed login and every lockout is logged to `system-monitor.log` (logger `opsportal.auth`) with
the username, the address and the path: never the password (Django's signal already masks it; this
module never reads it). Usernames are attacker-chosen text, so they are logged with `repr`: a newline in
one cannot forge a second log line.
"""

from __future__ import annotations

import logging
from typing import Any

from axes.helpers import get_client_username, get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.clients import client_address

log = logging.getLogger("opsportal.auth")


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """The lockout page (AXES_LOCKOUT_CALLABLE), for the login form and the admin: 429 with Retry-After."""
    cool_off = get_cool_off(request)
    minutes = max(1, int(cool_off.total_seconds() // 60)) if cool_off else 0
    context = {"username": get_client_username(request, credentials) or "", "lockout_minutes": minutes}
    response = render(request, "registration/locked_out.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)
    if cool_off:
        response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response


def _username(credentials: dict[str, Any] | None) -> str:
    value = (credentials or {}).get("username", "")
    return repr(str(value)[:150])


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """django.contrib.auth's user_login_failed: one warning line, without the password."""
    address = client_address(request) if request is not None else "-"
    path = request.path if request is not None else "-"
    locked = " (locked out)" if getattr(request, "axes_locked_out", False) else ""
    log.warning("login failed: user=%s address=%s path=%s%s", _username(credentials), address, path, locked)


def on_locked_out(
    sender: Any, request: HttpRequest | None = None, username: str = "", ip_address: str = "", **kwargs: Any
) -> None:
    """axes' user_locked_out: the user+address is refused until the cool-off ends or an admin resets it."""
    log.warning(
        "login locked out: user=%s address=%s for %d minutes after %d failures (`manage.py axes_reset` unlocks)",
        repr(str(username)[:150]),
        ip_address,
        settings.LOGIN_LOCKOUT_MINUTES,
        settings.AXES_FAILURE_LIMIT,
    )
