"""opsportal.middleware: the user the access log names is the one the portal authenticated, or none."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth import get_user_model

from api.models import ApiToken
from opsportal.middleware import ACCESS_LOG_USER

BASIC_ADMIN = "Basic " + base64.b64encode(b"admin:x").decode()


@pytest.fixture
def ops(db):
    return get_user_model().objects.create_superuser("ops", "ops@example.org", "not-used-here-9Qz")


def test_it_names_a_session_user(client, ops) -> None:
    client.force_login(ops)
    response = client.get("/")
    assert response.status_code == 200
    assert response.wsgi_request.META[ACCESS_LOG_USER] == "ops"


def test_it_names_an_api_tokens_user(client, ops) -> None:
    _, token = ApiToken.issue(ops, name="ci")
    response = client.post(
        "/health/recover", "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200
    assert response.wsgi_request.META[ACCESS_LOG_USER] == "ops"


def test_it_names_nobody_for_a_refused_basic_auth_claim(client, ops) -> None:
    response = client.post("/health/recover", "{}", content_type="application/json", HTTP_AUTHORIZATION=BASIC_ADMIN)
    assert response.status_code == 401
    assert response.wsgi_request.META[ACCESS_LOG_USER] == ""


def test_it_names_nobody_on_a_public_endpoint_even_with_a_session_cookie(client, ops) -> None:
    client.force_login(ops)  # the session is never read by /health/live: it was not checked, so not logged
    response = client.get("/health/live", HTTP_AUTHORIZATION=BASIC_ADMIN)
    assert response.status_code == 200
    assert response.wsgi_request.META[ACCESS_LOG_USER] == ""
