"""Unsafe and unknown methods on every /health/ endpoint answer the API's JSON 405 with `Allow`, never
Django's HTML CSRF page, with Django's CSRF checks enforced as in production (issue 14.10)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern

from api import urls
from health.permissions import RUN_RECOVERY
from recovery.models import RecoveryAttempt
from tests.api.api_support import bearer, make_service, make_user, staff_token

pytestmark = pytest.mark.django_db

# A path parameter stands for any value: the method is refused before it is looked at.
ENDPOINTS = [
    re.sub(r"<int:\w+>", "1", f"/health/{p.pattern}") for p in urls.urlpatterns if isinstance(p, URLPattern) and p.name
]
METHODS = ["POST", "PUT", "PATCH", "DELETE", "QUERY"]
ALLOWED = {"/health/recover": "POST"}
CASES = [(url, m) for url in ENDPOINTS for m in METHODS if m not in ALLOWED.get(url, "")]


def test_it_knows_every_endpoint():
    # The walk below covers what health/urls.py routes; this fails if the URL list is not what it reads.
    assert {"/health/live", "/health/ready", "/health/status", "/health/recover", "/health/openapi.json"} <= set(
        ENDPOINTS
    )


def assert_json_405(response, url: str, method: str) -> None:
    assert response.status_code == 405, (url, method, response.status_code, response.content[:200])
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"].startswith(f"method {method} not allowed")
    assert response["Allow"] == ALLOWED.get(url, "GET, HEAD")


@pytest.mark.parametrize(("url", "method"), CASES)
def test_it_answers_json_405_with_allow_to_an_anonymous_client(url, method):
    client = Client(enforce_csrf_checks=True)
    assert_json_405(client.generic(method, url, b"{}", content_type="application/json"), url, method)


@pytest.mark.parametrize(("url", "method"), CASES)
def test_it_answers_json_405_with_allow_to_a_logged_in_session(url, method):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("ops"))
    assert_json_405(client.generic(method, url, b"{}", content_type="application/json"), url, method)


@pytest.mark.parametrize("method", METHODS)
def test_it_answers_json_404_for_an_unknown_path_whatever_the_method(method):
    response = Client(enforce_csrf_checks=True).generic(method, "/health/nope")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


def test_it_still_refuses_a_session_recovery_without_a_csrf_token_as_json():
    make_service("api", status="down")
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("operator", perms=(RUN_RECOVERY,)))
    response = client.post("/health/recover", b'{"force": true}', content_type="application/json")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"].startswith("CSRF check failed")
    assert not RecoveryAttempt.objects.exists()


def test_it_takes_a_bearer_recovery_without_a_csrf_token():
    make_service("api", status="down")
    _, token = staff_token()
    response = Client(enforce_csrf_checks=True).post(
        "/health/recover", b'{"services": []}', content_type="application/json", **bearer(token)
    )
    assert response.status_code == 200, response.content
