from __future__ import annotations

import json
import sys

import pytest
from django.test import Client

from api.models import ApiToken
from health.permissions import RUN_RECOVERY
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.api.api_support import bearer, make_service, make_user, staff_token

pytestmark = pytest.mark.django_db

URL = "/health/recover"
STATS_KEYS = {"total", "successful", "failed", "successRate", "byService", "isRecovering"}


def post(client: Client, body: object = None, *, raw: bytes | None = None, **headers: str):
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return client.generic("POST", URL, data, content_type="application/json", **headers)


@pytest.fixture
def token() -> str:
    return staff_token()[1]


@pytest.fixture
def recoverable(tcp_server):
    """A down service whose probe will pass and whose action (a real subprocess) exits 0."""
    service = make_service("backend", settings={"host": "127.0.0.1", "port": tcp_server.port}, status="down")
    RecoveryAction.objects.create(
        service=service, kind="command", settings={"argv": [sys.executable, "-c", "pass"]}, verify_delay=0, timeout=10
    )
    return service


def assert_error(response, status: int, starts: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"].startswith(starts), body["error"]


def test_it_recovers_the_named_service_and_answers_the_documented_shape(client, token, recoverable):
    response = post(client, {"services": ["backend"], "force": True}, **bearer(token))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"message", "attempted", "services", "results", "stats"}
    assert body["attempted"] == 1
    assert body["services"] == ["backend"]
    result = body["results"][0]
    assert {"service", "timestamp", "success"} <= set(result)
    assert result["service"] == "backend"
    assert result["success"] is True
    assert set(body["stats"]) >= STATS_KEYS
    assert body["stats"]["successful"] == 1
    attempt = RecoveryAttempt.objects.get()
    assert attempt.trigger == "api"
    assert attempt.requested_by.username == "ops"
    assert attempt.requested_via.startswith("api token ops_")


def test_it_recovers_those_that_need_it_when_none_is_named(client, token, recoverable):
    make_service("fine", status="up")
    body = post(client, **bearer(token)).json()
    assert body["services"] == ["backend"]
    assert body["attempted"] == 1


def test_it_answers_401_without_credentials(client, recoverable):
    response = post(client, {"services": ["backend"]})
    assert_error(response, 401, "authentication required")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not RecoveryAttempt.objects.exists()


@pytest.mark.parametrize("header", ["Bearer ops_not-a-real-token", "Basic b3BzOnB3", "Bearer", "x-admin-password"])
def test_it_answers_401_for_bad_credentials(client, header, recoverable):
    response = post(client, {"services": ["backend"]}, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert not RecoveryAttempt.objects.exists()


def test_it_answers_401_for_a_revoked_token(client, recoverable):
    row, token = staff_token()
    row.revoke()
    assert_error(post(client, **bearer(token)), 401, "invalid or revoked API token")


def test_it_answers_401_for_the_token_of_an_inactive_user(client):
    row, token = ApiToken.issue(make_user("gone", active=False))
    assert post(client, **bearer(token)).status_code == 401


def test_it_answers_403_for_a_non_staff_token_or_session(client, recoverable):
    _, token = staff_token("viewer", staff=False)
    assert_error(post(client, {"services": ["backend"]}, **bearer(token)), 403, "this token's user is not staff")
    client.force_login(make_user("visitor", staff=False))
    assert_error(post(client, {"services": ["backend"]}), 403, "staff only")
    assert not RecoveryAttempt.objects.exists()


def test_it_needs_a_csrf_token_with_a_session(recoverable):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("operator", perms=(RUN_RECOVERY,)))
    assert_error(post(client, {"services": ["backend"], "force": True}), 403, "CSRF check failed")
    assert not RecoveryAttempt.objects.exists()
    # The token a page would carry: from the cookie the dashboard sets.
    client.get("/admin/password_change/")
    csrf = client.cookies["csrftoken"].value
    response = post(client, {"services": ["backend"], "force": True}, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200
    assert RecoveryAttempt.objects.get().requested_via == "api session"


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_it_answers_405_for_other_methods(client, token, method):
    response = getattr(client, method)(URL, **bearer(token))
    assert_error(response, 405, f"method {method.upper()} not allowed")
    assert response["Allow"] == "POST"


@pytest.mark.parametrize(
    ("raw", "starts"),
    [
        (b"{not json", "request body must be JSON"),
        (b"\xff\xfe", "request body must be JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'"backend"', "request body must be a JSON object"),
        (b'{"service": ["backend"]}', "unknown key 'service'"),
        (b'{"services": "backend"}', "'services' must be a list of service names"),
        (b'{"services": [1]}', "'services' must be a list of service names"),
        (b'{"services": ["Bad Name"]}', "'services' must be a list of service names"),
        (b'{"force": "yes"}', "'force' must be true or false"),
    ],
)
def test_it_answers_400_naming_what_is_wrong(client, token, recoverable, raw, starts):
    assert_error(post(client, raw=raw, **bearer(token)), 400, starts)
    assert not RecoveryAttempt.objects.exists()


def test_it_answers_404_for_an_unknown_service_and_runs_nothing(client, token, recoverable):
    response = post(client, {"services": ["backend", "ghost"], "force": True}, **bearer(token))
    assert_error(response, 404, "unknown service 'ghost'")
    assert not RecoveryAttempt.objects.exists()


def test_it_answers_413_for_an_oversized_body(client, token, recoverable):
    huge = json.dumps({"services": ["backend"] * 20_000}).encode()
    assert len(huge) > 64 * 1024
    assert_error(post(client, raw=huge, **bearer(token)), 413, "request body too large")
    assert not RecoveryAttempt.objects.exists()


def test_it_updates_the_tokens_last_use(client, token, recoverable):
    post(client, {"services": ["backend"], "force": True}, **bearer(token))
    assert ApiToken.objects.get().last_used_at is not None


def test_it_answers_411_for_a_chunked_body_and_never_reads_it_as_empty(client, token, recoverable):
    # An unread body would mean "recover every service that needs it" and lose `force` (issue 15.11).
    make_service("other", status="down")
    response = client.generic(
        "POST", URL, b"", content_type="application/json", HTTP_TRANSFER_ENCODING="chunked", **bearer(token)
    )
    assert_error(response, 411, "request body without Content-Length")
    assert "chunked" in response.json()["error"]
    assert not RecoveryAttempt.objects.exists()


def test_it_answers_400_for_json_nested_too_deeply(client, token, recoverable):
    deep = b"[" * 5000 + b"]" * 5000
    assert len(deep) < 64 * 1024
    assert_error(post(client, raw=deep, **bearer(token)), 400, "request body is nested too deeply")
    deep_object = b'{"services": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert_error(post(client, raw=deep_object, **bearer(token)), 400, "request body is nested too deeply")
    assert not RecoveryAttempt.objects.exists()
