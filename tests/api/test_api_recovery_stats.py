from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from health.models import Service
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.api.api_support import bearer, make_service, staff_token

pytestmark = pytest.mark.django_db

Outcome = RecoveryAttempt.Outcome


def attempts(service, outcomes: list[str]) -> list[RecoveryAttempt]:
    start = timezone.now() - timedelta(hours=1)
    return [
        RecoveryAttempt.objects.create(
            service=service, trigger="auto", outcome=o, started_at=start + timedelta(minutes=i), action_kind="command"
        )
        for i, o in enumerate(outcomes)
    ]


def test_it_answers_the_documented_shape_with_nothing_recorded(client):
    response = client.get("/health/recovery-stats")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert {"stats", "history", "needsRecovery"} <= set(body)
    assert {"total", "successful", "failed", "successRate", "byService", "isRecovering"} <= set(body["stats"])
    assert body["stats"]["total"] == 0
    assert body["stats"]["successRate"] == "0.0%"
    assert body["stats"]["isRecovering"] is False
    assert body["history"] == []
    assert body["needsRecovery"] == {"needed": False, "services": []}


def test_it_counts_outcomes_and_lists_history_newest_first(client):
    api = make_service("api")
    rows = attempts(api, [Outcome.SUCCEEDED, Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SUCCEEDED, Outcome.SUCCEEDED])
    body = client.get("/health/recovery-stats").json()
    assert body["stats"]["total"] == 5
    assert body["stats"]["successful"] == 4
    assert body["stats"]["failed"] == 1
    assert body["stats"]["successRate"] == "80.0%"
    assert body["stats"]["byService"]["api"] == 5
    assert [h["id"] for h in body["history"]] == [r.pk for r in reversed(rows)]
    first = body["history"][0]
    assert {"service", "timestamp", "success"} <= set(first)
    assert first["service"] == "api" and first["success"] is True


def test_it_caps_and_pages_the_history(client):
    rows = attempts(make_service("api"), [Outcome.FAILED] * 7)
    newest_first = [r.pk for r in reversed(rows)]
    assert [h["id"] for h in client.get("/health/recovery-stats?limit=3").json()["history"]] == newest_first[:3]
    page = client.get("/health/recovery-stats?limit=3&offset=3").json()["history"]
    assert [h["id"] for h in page] == newest_first[3:6]


def test_it_reports_what_needs_recovery(client):
    down = make_service("db", status="down")
    make_service("no-action", status="down")  # nothing could recover it
    make_service("ok", status="up")
    for service in Service.objects.all():
        if service.name != "no-action":
            RecoveryAction.objects.create(service=service, kind="command", settings={"argv": ["true"]})
    attempts(down, [Outcome.IN_PROGRESS])
    body = client.get("/health/recovery-stats").json()
    assert body["needsRecovery"] == {"needed": True, "services": ["db"]}
    assert body["stats"]["isRecovering"] is True


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "limit=501", "offset=-1", "offset=x"])
def test_it_answers_400_naming_a_bad_parameter(client, query):
    response = client.get(f"/health/recovery-stats?{query}")
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"'{query.split('=')[0]}' must be an integer")


def test_it_refuses_post_with_405(client):
    assert client.post("/health/recovery-stats").status_code == 405


def test_it_needs_credentials_when_health_public_is_off(client, settings):
    settings.HEALTH_PUBLIC = False
    response = client.get("/health/recovery-stats")
    assert response.status_code == 401
    assert "Bearer" in response["WWW-Authenticate"]
    assert client.get("/health/recovery-stats", **bearer(staff_token()[1])).status_code == 200
