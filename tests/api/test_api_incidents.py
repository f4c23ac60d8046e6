from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from health.models import Incident
from tests.api.api_support import bearer, make_service, make_user, staff_token

pytestmark = pytest.mark.django_db

INCIDENT_KEYS = {
    "id",
    "service",
    "status",
    "severity",
    "openedAt",
    "acknowledgedAt",
    "acknowledgedBy",
    "resolvedAt",
    "cause",
    "lastError",
    "parent",
}


@pytest.fixture
def incidents():
    now = timezone.now()
    api, db = make_service("api"), make_service("db")
    old = Incident.objects.create(
        service=api, opened_at=now - timedelta(hours=3), resolved_at=now - timedelta(hours=2), cause="timeout"
    )
    acked = Incident.objects.create(
        service=db,
        opened_at=now - timedelta(hours=1),
        cause="refused",
        acknowledged_at=now,
        acknowledged_by=make_user("alice"),
    )
    latest = Incident.objects.create(service=api, opened_at=now - timedelta(minutes=5), cause="HTTP 500")
    return old, acked, latest


def ids(response) -> list[int]:
    return [i["id"] for i in response.json()["incidents"]]


def test_it_lists_incidents_newest_first_with_the_documented_keys(client, incidents):
    old, acked, latest = incidents
    response = client.get("/health/incidents")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert ids(response) == [latest.pk, acked.pk, old.pk]
    rows = response.json()["incidents"]
    assert all(set(r) == INCIDENT_KEYS for r in rows)
    assert rows[1]["acknowledgedBy"] == "alice"
    assert rows[1]["status"] == "open"
    assert rows[2]["status"] == "resolved" and rows[2]["resolvedAt"] is not None


def test_it_filters_by_status_and_service(client, incidents):
    old, acked, latest = incidents
    assert ids(client.get("/health/incidents?status=open")) == [latest.pk, acked.pk]
    assert ids(client.get("/health/incidents?status=resolved")) == [old.pk]
    assert ids(client.get("/health/incidents?service=api")) == [latest.pk, old.pk]
    assert ids(client.get("/health/incidents?service=api&status=open")) == [latest.pk]
    assert ids(client.get("/health/incidents?limit=1&offset=1")) == [acked.pk]


def test_it_answers_404_for_an_unknown_service(client, incidents):
    response = client.get("/health/incidents?service=nope")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown service 'nope'"}


@pytest.mark.parametrize(
    ("query", "message"),
    [("status=closed", "'status' must be one of open, resolved"), ("limit=x", "'limit' must be an integer")],
)
def test_it_answers_400_for_a_bad_parameter(client, query, message):
    response = client.get(f"/health/incidents?{query}")
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


def test_it_refuses_post_with_405(client):
    assert client.post("/health/incidents").status_code == 405


def test_it_needs_credentials_when_health_public_is_off(client, settings, incidents):
    settings.HEALTH_PUBLIC = False
    assert client.get("/health/incidents").status_code == 401
    assert client.get("/health/incidents", **bearer("ops_not-a-token")).status_code == 401
    assert len(ids(client.get("/health/incidents", **bearer(staff_token()[1])))) == 3


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["no\x00pe", "UPPER", "a b", "x" * 101])
def test_it_refuses_a_service_filter_that_cannot_be_a_name(client, bad):
    response = client.get("/health/incidents", {"service": bad})
    assert response.status_code == 400
    assert "'service' must be a service name" in response.json()["error"]


@pytest.mark.parametrize("value", ["", "Bad", "api\n", " api"])
def test_it_answers_400_for_an_empty_or_invalid_service_name(client, value):
    make_service("api")
    response = client.get("/health/incidents", {"service": value})
    assert response.status_code == 400
    assert response.json()["error"].startswith("'service' must be a service name")
