"""Who is asking: the client address a request is counted by (login throttle, bad-token limit)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    """The address failures are counted by (AXES_CLIENT_IP_CALLABLE).

    The TCP peer, unless LOGIN_PROXY_COUNT proxies stand in front: then the address the outermost of
    them wrote into X-Forwarded-For, counted from the right, as a client can prepend fakes but not
    append after a proxy. The shipped nginx config overwrites the header, so there it is the only entry.
    """
    peer = request.META.get("REMOTE_ADDR", "") or ""
    count = settings.LOGIN_PROXY_COUNT
    if count <= 0:
        return peer
    hops = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(hops) < count:
        return peer
    return hops[-count][:64]
