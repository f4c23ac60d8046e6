"""Benchmark-only URLconf: `/bench/bare` (a Django view returning `{}`) in front of the product's URLs.

The bare view is the yardstick: the same gunicorn, middleware and Django, with no work of its own.
It never ships in the product's URLconf.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from opsportal.urls import urlpatterns as product


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


urlpatterns = [path("bench/bare", bare), *product]
