"""Authentication decorators for the JSON API: they set `request.api_user` and `request.api_token`.

Accepted credentials: `Authorization: Bearer <token>` (an ApiToken, stored hashed) or a logged-in
session — with a valid CSRF token on unsafe methods, since a browser sends the session cookie by itself.
Reading needs a staff session or any valid token; each action needs its permission (health.permissions).
Bad tokens are counted per address and limited (api.throttle).
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from api import throttle
from api.base import ApiError, public_setting
from api.models import ApiToken
from health.permissions import allowed, denied

log = logging.getLogger("opsportal.health.auth")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="opsportal"'}
INVALID = {"WWW-Authenticate": 'Bearer realm="opsportal", error="invalid_token"'}


class ApiRequest(HttpRequest):
    """A request the API's decorators have authenticated: who asks (None while reads are public)."""

    api_user: Any
    api_token: ApiToken | None


class _CsrfCheck(CsrfViewMiddleware):
    # Return the reason instead of rendering Django's HTML 403 page.
    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an `Authorization: Bearer` header; None without the header; 401 for any other scheme."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError("Authorization must be 'Bearer <token>'", 401, INVALID)
    return token.strip()


def _enforce_csrf(request: HttpRequest) -> None:
    check = _CsrfCheck(lambda r: None)  # type: ignore[arg-type, return-value]
    check.process_request(request)
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    if reason:
        raise ApiError(f"CSRF check failed: {reason}", 403)


def authenticate(request: HttpRequest, *, staff: bool) -> None:
    """Set request.api_user/api_token from a bearer token or the session, or raise 401/403.

    `staff=True`: the user must be staff (tokens too). `staff=False`: any valid token; a session still
    must be staff, since the portal's only logins are operators.
    """
    token = bearer_token(request)
    if token is not None:
        address = throttle.client_address(request)
        # Before the lookup: an address over its limit learns nothing, not even from a right guess.
        throttle.check(address)
        row = ApiToken.authenticate(token)
        if row is None:
            count = throttle.record_failure(address)
            # Never the token, not even its first characters: a near-miss is a secret too.
            log.warning(
                "API token refused from %s: invalid or revoked (%s %s, %d in this window)",
                address,
                request.method,
                request.path,
                count,
            )
            raise ApiError("invalid or revoked API token", 401, INVALID)
        if staff and not row.user.is_staff:
            raise ApiError("this token's user is not staff", 403)
        row.touch()
        authed = cast(ApiRequest, request)
        authed.api_user, authed.api_token = row.user, row
        return
    user = request.user
    if not user.is_authenticated:
        raise ApiError("authentication required: a staff session or 'Authorization: Bearer <token>'", 401, CHALLENGE)
    if not user.is_staff:
        raise ApiError("staff only", 403)
    if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
        _enforce_csrf(request)
    authed = cast(ApiRequest, request)
    authed.api_user, authed.api_token = user, None


def staff_asks(request: HttpRequest) -> bool:
    """Whether a staff user asks (a staff session, or a staff user's token): answers may then hold what only
    operators see (ping URLs). A public read with a bad token is not refused here, only not staff."""
    user = getattr(request, "api_user", None)
    if user is None and bearer_token_or_none(request) is not None:
        try:
            authenticate(request, staff=True)
        except ApiError:
            return False
        user = cast(ApiRequest, request).api_user
    if user is None:
        session_user = getattr(request, "user", None)
        user = session_user if session_user is not None and session_user.is_authenticated else None
    return bool(user is not None and user.is_active and user.is_staff)


def bearer_token_or_none(request: HttpRequest) -> str | None:
    try:
        return bearer_token(request)
    except ApiError:
        return None


def via(request: HttpRequest) -> str:
    """How the request was authenticated, for the audit trail (never the token itself)."""
    token = getattr(request, "api_token", None)
    if token is not None:
        return f"api token {token.prefix}… {token.name}".strip()
    return "api session"


def permission_required(permission: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A staff user by token or session (with CSRF) who has `permission` (superusers have all); 403 naming
    it otherwise. Goes inside `api_view`, which turns errors into JSON."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            authenticate(request, staff=True)
            if not allowed(cast(ApiRequest, request).api_user, permission):
                raise ApiError(denied(permission), 403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def readable(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Public while HEALTH_PUBLIC is true (the default); otherwise a token or a staff session."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        authed = cast(ApiRequest, request)
        authed.api_user = authed.api_token = None
        if not public_setting():
            authenticate(request, staff=False)
        return view(request, *args, **kwargs)

    return wrapper


def metrics_readable(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """/metrics: public unless METRICS_TOKEN is set or HEALTH_PUBLIC is false.

    With METRICS_TOKEN, a scraper sends it as a bearer token (Prometheus `authorization: credentials`);
    an API token or a staff session works too.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        authed = cast(ApiRequest, request)
        authed.api_user = authed.api_token = None
        metrics_token = getattr(settings, "METRICS_TOKEN", "")
        if metrics_token or not public_setting():
            token = bearer_token(request)
            if token and metrics_token:
                # Before the comparison: an address over its limit learns nothing, not even from a right guess.
                throttle.check(throttle.client_address(request))
            if not (token and metrics_token and hmac.compare_digest(token.encode(), metrics_token.encode())):
                # A wrong token is counted there, once, unless it is a valid API token.
                authenticate(request, staff=False)
        return view(request, *args, **kwargs)

    return wrapper
