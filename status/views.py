"""Thin views of the public faces: a status page (HTML, summary.json, feed.atom) and the badges."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import condition, require_safe

from status import badges, pages, statuspage, svg
from status.feeds import feed as atom_feed
from status.pages import Snapshot

BADGE_MAX_AGE = 60


def _page_url(request: HttpRequest, slug: str, on_host: bool, suffix: str = "") -> str:
    """The page's absolute address: / on its own host name, /status/<slug>/ otherwise."""
    path = "/" if on_host else reverse("status:page", args=[slug])
    return request.build_absolute_uri(path + suffix)


def _snapshot(request: HttpRequest, slug: str) -> Snapshot | HttpResponse:
    snap = pages.snapshot(slug)
    if snap is None:
        raise Http404("no such status page")
    if not snap.public and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return snap


def _cached(response: HttpResponse, snap: Snapshot) -> HttpResponse:
    ttl = int(settings.STATUS_PAGE_CACHE_SECONDS)
    if snap.public:
        patch_cache_control(response, public=True, max_age=ttl)
    else:
        patch_cache_control(response, private=True, max_age=0)
    return response


@require_safe
def page(request: HttpRequest, slug: str, on_host: bool = False) -> HttpResponse:
    snap = _snapshot(request, slug)
    if isinstance(snap, HttpResponse):
        return snap
    rows = [(c, svg.day_bar(c.days, name=c.name)) for c in snap.components]
    context = {
        "snap": snap,
        "rows": rows,
        "legend": svg.LABELS,
        "summary_url": _page_url(request, slug, on_host, "summary.json"),
        "feed_url": _page_url(request, slug, on_host, "feed.atom"),
    }
    return _cached(render(request, "status/page.html", context), snap)


@require_safe
def summary(request: HttpRequest, slug: str, on_host: bool = False) -> HttpResponse:
    snap = _snapshot(request, slug)
    if isinstance(snap, HttpResponse):
        return snap
    body = statuspage.summary(snap, _page_url(request, slug, on_host))
    return _cached(HttpResponse(json.dumps(body), content_type="application/json"), snap)


@require_safe
def feed(request: HttpRequest, slug: str, on_host: bool = False) -> HttpResponse:
    snap = _snapshot(request, slug)
    if isinstance(snap, HttpResponse):
        return snap
    url = _page_url(request, slug, on_host)
    generated = atom_feed(snap, url, _page_url(request, slug, on_host, "feed.atom"))
    response = HttpResponse(content_type=f"{generated.content_type}")
    generated.write(response, "utf-8")
    return _cached(response, snap)


# --- badges ---------------------------------------------------------------------------------------
def _badge(request: HttpRequest, name: str, window: str | None = None) -> badges.Badge:
    """The badge of this request, looked up once (the ETag function and the view share it)."""
    if not hasattr(request, "_status_badge"):
        request._status_badge = badges.get(name, window)  # type: ignore[attr-defined]
    found = request._status_badge  # type: ignore[attr-defined]
    if found is None:
        raise Http404("no badge for this service")
    return found


def _badge_response(body: str, content_type: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    patch_cache_control(response, public=True, max_age=BADGE_MAX_AGE)
    return response


def _etag(kind: str):  # type: ignore[no-untyped-def]
    return lambda request, name, window=None: _badge(request, name, window).etag(kind)


def _not_modified_cache_control(view):  # type: ignore[no-untyped-def]
    """condition() answers 304 itself: give it the same Cache-Control as the full answer."""

    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:  # type: ignore[no-untyped-def]
        response = view(request, *args, **kwargs)
        if response.status_code == 304:
            patch_cache_control(response, public=True, max_age=BADGE_MAX_AGE)
        return response

    return wrapped


@require_safe
@_not_modified_cache_control
@condition(etag_func=_etag("svg"))
def badge_svg(request: HttpRequest, name: str, window: str | None = None) -> HttpResponse:
    found = _badge(request, name, window)
    return _badge_response(svg.badge(found.label, found.message, found.color), "image/svg+xml")


@require_safe
@_not_modified_cache_control
@condition(etag_func=_etag("json"))
def badge_json(request: HttpRequest, name: str) -> HttpResponse:
    return _badge_response(_badge(request, name).endpoint_json(), "application/json")
