"""The user the portal authenticated, for gunicorn's access log.

gunicorn's own `%(u)s` is the username of an `Authorization: Basic` header, which nobody checked: a
refused anonymous request claiming `admin` was logged as `admin`. This middleware puts the user the
application decided on (a session user, or an API token's user) into the WSGI environ; the logger
class in gunicorn.conf.py takes `u` from there, and `-` when there is none.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.utils.functional import LazyObject, empty

# The WSGI environ key (request.META is the environ); gunicorn.conf.py reads the same name.
ACCESS_LOG_USER = "opsportal.user"


def authenticated_username(request: HttpRequest) -> str:
    """The username the application authenticated for this request, or "" when none."""
    user = getattr(request, "api_user", None)  # api.auth: a token's user or the session's
    if user is None:
        user = getattr(request, "user", None)
        # A session the request never looked at was never checked: do not load it just for the log.
        if isinstance(user, LazyObject) and user._wrapped is empty:
            return ""
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        return ""
    # Log-safe: one token, no spaces or control characters (a log line is split on spaces).
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in user.get_username())


def access_log_user(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        # After the view: only then is it known whom the application accepted.
        request.META[ACCESS_LOG_USER] = authenticated_username(request)
        return response

    return middleware
