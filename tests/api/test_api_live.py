from __future__ import annotations

import os

import pytest

from tests.api.api_support import unreachable_database

pytestmark = pytest.mark.django_db


def test_it_answers_alive_with_pid_uptime_and_version(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert {"status", "pid", "uptime", "version"} <= set(body)
    assert body["status"] == "alive"
    assert body["pid"] == os.getpid()
    assert isinstance(body["uptime"], int) and body["uptime"] >= 0
    assert isinstance(body["version"], str) and body["version"]


def test_it_makes_no_database_query(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.status_code == 200


def test_it_keeps_answering_while_the_database_is_unreachable(client):
    with unreachable_database():
        # The database is really gone for this thread: any query would fail.
        assert client.get("/health/ready").status_code == 503
        response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "alive"


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_it_refuses_other_methods_with_a_json_405(client, method):
    response = getattr(client, method)("/health/live")
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert "GET" in response["Allow"]
    assert "not allowed" in response.json()["error"]


def test_it_answers_unknown_paths_under_health_with_a_json_404(client):
    for path in ("/health/nope", "/health/live/extra", "/health/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"error": f"no such endpoint: {path}"}


def test_it_answers_a_server_error_with_json_not_a_traceback(client, monkeypatch):
    def broken() -> dict:
        raise RuntimeError("boom: internal detail")

    # Fault injection: the payload builder fails the way a bug would.
    monkeypatch.setattr("api.base.live_payload", broken)
    response = client.get("/health/live")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "internal server error"}
    assert b"boom" not in response.content
