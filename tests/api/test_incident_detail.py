"""GET /health/incidents/<id>: the incident's fields and its timeline (health.timeline), as GET /health/incidents
is read (public while HEALTH_PUBLIC, else a token or a staff session)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from health import timeline
from health.models import Incident, IncidentUpdate
from health.runner import run_round
from recovery.models import RecoveryAttempt
from tests.api.api_support import bearer, make_service, make_user, staff_token
from tests.api.test_api_incidents import INCIDENT_KEYS
from tests.health import timeline_support as world

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings):
    world.set_up(settings)


@pytest.fixture
def incident() -> Incident:
    """A HARD-down incident through the runner (a closed port, threshold 1)."""
    service = make_service("db", failure_threshold=1)
    run_round([service])
    return Incident.objects.get(service=service)


def url(pk: int) -> str:
    return f"/health/incidents/{pk}"


def test_it_answers_the_incident_with_its_timeline(client, incident):
    IncidentUpdate.objects.create(incident=incident, status="investigating", message="on it", author=make_user("bob"))
    response = client.get(url(incident.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == INCIDENT_KEYS | {"declaredBy", "postmortem", "timeline"}
    assert body["id"] == incident.pk and body["service"] == "db" and body["status"] == "open"
    assert body["declaredBy"] is None and body["postmortem"] == ""
    assert [e["kind"] for e in body["timeline"]] == ["state_change", "opened", "notification", "update"]
    assert all(set(e) == {"at", "kind", "title", "detail", "data"} for e in body["timeline"])
    assert body["timeline"][0]["title"] == "First failure: HARD down"
    assert body["timeline"][3] == {
        "at": IncidentUpdate.objects.get().created_at.isoformat(),
        "kind": "update",
        "title": "Update: investigating",
        "detail": "on it",
        "data": {"status": "investigating", "public": True, "by": "bob"},
    }


@pytest.mark.slow("a real outage: four probe rounds, two outbox passes and a repair command")
def test_it_answers_what_the_timeline_builds_secrets_masked(client, make_http_server, tmp_path):
    evidence = {"log": "GET /login?token=abc123secret\n<img src=x onerror=alert(1)>"}
    outage = world.outage(make_http_server(), make_http_server(), tmp_path, evidence=evidence)
    response = client.get(url(outage.incident.pk), **bearer(staff_token()[1]))
    assert response.status_code == 200
    body = response.json()
    assert body["timeline"] == [e.as_dict() for e in timeline.build(world.load(outage.incident))]
    assert body["status"] == "resolved" and body["acknowledgedBy"] == "alice"
    content = response.content.decode()
    assert "hunter2" not in content and "abc123secret" not in content
    (attempt,) = [e for e in body["timeline"] if e["kind"] == "recovery"]
    assert attempt["data"]["evidence"]["log"].startswith("GET /login?token=••••••")
    assert "postgres://••••••@127.0.0.1/db" in attempt["data"]["actionDetail"]
    assert attempt["data"]["verified"] is True

    # Read without credentials (HEALTH_PUBLIC): the same timeline, but what the repair printed and the
    # evidence it kept are for operators.
    public = client.get(url(outage.incident.pk)).json()
    assert [e["title"] for e in public["timeline"]] == [e["title"] for e in body["timeline"]]
    (anonymous,) = [e for e in public["timeline"] if e["kind"] == "recovery"]
    assert "evidence" not in anonymous["data"] and "actionDetail" not in anonymous["data"]
    assert anonymous["data"]["withheld"] == ["actionDetail", "evidence"]
    assert anonymous["data"]["verified"] is True and anonymous["detail"] == attempt["detail"]


def test_it_shows_the_evidence_to_staff_only(client, incident):
    RecoveryAttempt.objects.create(
        service=incident.service, trigger="auto", outcome="failed", action_detail="exit 1", evidence={"log": "x"}
    )

    def recovery(**headers) -> dict:
        (entry,) = [e for e in client.get(url(incident.pk), **headers).json()["timeline"] if e["kind"] == "recovery"]
        return entry

    # A bad token on a public read is no operator, and not refused either (as /health/status's ping URLs).
    assert recovery(**bearer("ops_not-a-token"))["data"]["withheld"] == ["actionDetail", "evidence"]
    assert recovery(**bearer(staff_token("bot", staff=False, perms=())[1]))["data"]["withheld"]
    assert recovery(**bearer(staff_token()[1]))["data"]["evidence"] == {"log": "x"}
    client.force_login(make_user("ops2"))
    (attempt,) = [e for e in client.get(url(incident.pk)).json()["timeline"] if e["kind"] == "recovery"]
    assert attempt["data"]["evidence"] == {"log": "x"} and attempt["data"]["actionDetail"] == "exit 1"


def test_it_shows_a_declared_incident_and_its_postmortem(client):
    service = make_service("payments")
    now = timezone.now()
    declared = Incident.objects.create(
        service=service,
        declared_by=make_user("carol"),
        opened_at=now - timedelta(minutes=30),
        resolved_at=now,
        postmortem="Vendor outage; see https://user:pw@vendor.example/status",
    )
    body = client.get(url(declared.pk)).json()
    assert body["declaredBy"] == "carol"
    assert body["postmortem"] == "Vendor outage; see https://••••••@vendor.example/status"
    assert [e["kind"] for e in body["timeline"]] == ["opened", "resolved", "postmortem"]
    assert body["timeline"][-1]["detail"] == body["postmortem"]


@pytest.mark.parametrize("path", ["/health/incidents/999999", "/health/incidents/99999999999999999999999999"])
def test_it_answers_json_404_for_an_unknown_incident(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": f"no incident {path.rsplit('/', 1)[1]}"}


@pytest.mark.parametrize("path", ["/health/incidents/abc", "/health/incidents/-1", "/health/incidents/1/x"])
def test_it_answers_json_404_for_what_cannot_be_an_incident(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": f"no such endpoint: {path}"}


def test_it_refuses_post_with_405(client, incident):
    response = client.post(url(incident.pk))
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_it_needs_credentials_when_health_public_is_off(client, settings, incident):
    settings.HEALTH_PUBLIC = False
    assert client.get(url(incident.pk)).status_code == 401
    assert client.get(url(999999)).status_code == 401  # nothing told about what exists
    assert client.get(url(incident.pk), **bearer("ops_not-a-token")).status_code == 401
    response = client.get(url(incident.pk), **bearer(staff_token()[1]))
    assert response.status_code == 200 and response.json()["id"] == incident.pk


def test_it_answers_in_a_bounded_number_of_queries(client, incident, django_assert_max_num_queries):
    RecoveryAttempt.objects.bulk_create(
        RecoveryAttempt(
            service=incident.service, trigger="auto", outcome="failed", started_at=incident.opened_at + timedelta(i)
        )
        for i in range(1, 80)
    )
    # The incident, the span, health's three, notify's two, recovery's one.
    with django_assert_max_num_queries(8):
        response = client.get(url(incident.pk))
    # Open: its span runs to now, so the attempts dated later (up to 79 days) are not yet in it.
    assert response.status_code == 200
    Incident.objects.filter(pk=incident.pk).update(resolved_at=incident.opened_at + timedelta(days=100))
    with django_assert_max_num_queries(8):
        response = client.get(url(incident.pk))
    assert [e["kind"] for e in response.json()["timeline"]].count("recovery") == 79
