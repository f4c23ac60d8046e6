from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

import api.base
from tests.api.api_support import unreachable_database

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh_migration_check(monkeypatch):
    # The "all applied" answer is kept per process; each test here starts without it.
    monkeypatch.setattr(api.base, "_migrations_applied", False)


def test_it_is_ready_when_the_database_answers_and_migrations_are_applied(client, fresh_migration_check):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"]["status"] == "up"
    assert isinstance(body["database"]["latencyMs"], float)


def test_it_answers_503_with_a_reason_when_the_database_is_unreachable(client, fresh_migration_check):
    with unreachable_database():
        response = client.get("/health/ready")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["reason"] == "the database does not answer"
    assert body["database"]["status"] == "down"


def test_it_answers_503_naming_a_migration_that_is_not_applied(client, fresh_migration_check):
    # Forget one applied migration for real (rolled back with the test's transaction).
    MigrationRecorder(connection).migration_qs.filter(app="health").delete()
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert "not applied, first health.0001_initial" in body["reason"]


def test_it_refuses_post_with_405(client):
    response = client.post("/health/ready")
    assert response.status_code == 405
    assert response.json()["error"].startswith("method POST not allowed")
