"""A status page on its own domain: `/`, `/summary.json` and `/feed.atom` with a page's `hostname` in the Host
header are that page. Every other path, and every other host, goes on to the portal's URLs as usual.

The host must also be in ALLOWED_HOSTS (the operator's setting): Django refuses any other Host before this.
The host-to-page map is read once per STATUS_PAGE_CACHE_SECONDS per process (and again after a page is saved
here), so the dashboard's `/` costs no query for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.http.request import split_domain_port

from status import views
from status.models import StatusPage

ROUTES: dict[str, Callable[..., HttpResponse]] = {
    "/": views.page,
    "/summary.json": views.summary,
    "/feed.atom": views.feed,
}
_hosts: dict[str, str] = {}
_read_at: float | None = None


def forget_hosts(**_: object) -> None:
    """Read the map again on the next request (a page was saved or deleted)."""
    global _read_at
    _read_at = None


def page_for_host(host: str) -> str | None:
    global _hosts, _read_at
    now = time.monotonic()
    if _read_at is None or now - _read_at >= settings.STATUS_PAGE_CACHE_SECONDS:
        _hosts = dict(StatusPage.objects.exclude(hostname="").values_list("hostname", "slug"))
        _read_at = now
    return _hosts.get(host)


def status_hostnames(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        view = ROUTES.get(request.path_info)
        if view is not None:
            domain, _ = split_domain_port(request.get_host())
            slug = page_for_host(domain.lower())
            if slug is not None:
                try:
                    return view(request, slug=slug, on_host=True)
                except Http404:  # the page was deleted since the map was read: the portal's own URL then
                    forget_hosts()
        return get_response(request)

    return middleware
