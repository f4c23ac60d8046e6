"""The dashboard's incident page (/incidents/<pk>/): the incident, its timeline (the same entries as
GET /health/incidents/<id>), escaped and masked, evidence collapsed; linked from the lists."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.test import Client

from health.models import Incident, IncidentUpdate
from health.runner import run_round
from recovery.models import RecoveryAttempt
from tests.dashboard.dashboard_fixtures import make_service, staff_client, user_client
from tests.health import timeline_support as world

__all__ = ["staff_client", "user_client"]

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings):
    world.set_up(settings)


@pytest.fixture
def incident() -> Incident:
    service = make_service("db", status="unknown", kind="tcp", settings={"host": "127.0.0.1", "port": 9})
    service.failure_threshold = 1
    run_round([service])
    return Incident.objects.get(service=service)


def page_url(incident: Incident) -> str:
    return f"/incidents/{incident.pk}/"


def titles(content: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<strong class="tl-title">(.*?)</strong>', content, re.S)]


def test_it_sends_anonymous_users_to_the_login_page(incident):
    response = Client().get(page_url(incident))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_forbids_non_staff(user_client, incident):
    assert user_client.get(page_url(incident)).status_code == 403


def test_it_answers_404_for_an_unknown_incident(staff_client):
    assert staff_client.get("/incidents/999999/").status_code == 404
    assert staff_client.get("/incidents/abc/").status_code == 404


def test_it_refuses_post(staff_client, incident):
    assert staff_client.post(page_url(incident)).status_code == 405


def test_it_shows_the_incident_its_timeline_and_the_actions_slot(staff_client, incident):
    IncidentUpdate.objects.create(incident=incident, status="investigating", message="on it")
    response = staff_client.get(page_url(incident))
    assert response.status_code == 200
    assert "dashboard/_incident_actions.html" in [t.name for t in response.templates]
    assert response.context["incident"] == incident
    content = response.content.decode()
    assert titles(content) == [
        "First failure: HARD down",
        "Incident opened (critical)",
        "Queued for notification: db is down",
        "Update: investigating",
    ]
    assert "<strong>open</strong>" in content
    assert 'href="/services/db/"' in content


@pytest.mark.slow("a real outage: four probe rounds, two outbox passes and a repair command")
def test_it_agrees_with_the_json_escapes_and_masks(staff_client, client, make_http_server, tmp_path):
    evidence = {
        "processes": [{"pid": 4242, "cmdline": "backend --dsn postgres://app:hunter2@127.0.0.1/db", "ports": [8080]}],
        "logTail": "<img src=x onerror=alert(1)>\nGET /?token=abc123secret",
    }
    outage = world.outage(make_http_server(), make_http_server(), tmp_path, evidence=evidence)
    content = staff_client.get(page_url(outage.incident)).content.decode()
    answer = client.get(f"/health/incidents/{outage.incident.pk}").json()
    assert titles(content) == [e["title"] for e in answer["timeline"]]

    # Bodies hold HTML: the probe's detail, the update, the action's output and the evidence are all text here.
    for raw in [world.READY, "<script>alert('x')</script>", "<b>restarted</b>", "<img src=x onerror=alert(1)>"]:
        assert raw not in content
        assert html.escape(raw) in content
    assert "hunter2" not in content and "abc123secret" not in content
    assert "postgres://••••••@127.0.0.1/db" in content
    # The evidence, collapsed with the attempt it was captured for.
    details = re.search(r'<details class="evidence">(.*?)</details>', content, re.S)
    assert details is not None
    assert "Evidence captured before the restart" in details.group(1)
    assert "4242" in details.group(1) and "logTail" in details.group(1)
    assert "verification: up" in content


def test_it_shows_no_evidence_block_when_none_was_captured(staff_client, incident):
    RecoveryAttempt.objects.create(service=incident.service, trigger="manual", outcome="failed", action_detail="exit 1")
    content = staff_client.get(page_url(incident)).content.decode()
    assert "Action output" in content
    assert 'class="evidence"' not in content


def test_it_renders_many_attempts_in_a_bounded_number_of_queries(staff_client, incident, django_assert_max_num_queries):
    def count() -> int:
        with django_assert_max_num_queries(14) as captured:
            assert staff_client.get(page_url(incident)).status_code == 200
        return len(captured)

    few = count()
    RecoveryAttempt.objects.bulk_create(
        RecoveryAttempt(
            service=incident.service,
            trigger="auto",
            outcome="failed",
            started_at=incident.opened_at + timedelta(seconds=i),
            evidence={"log": f"line {i}"},
        )
        for i in range(80)
    )
    Incident.objects.filter(pk=incident.pk).update(resolved_at=incident.opened_at + timedelta(hours=1))
    assert count() == few
    assert staff_client.get(page_url(incident)).content.decode().count('class="evidence"') == 80


def test_it_is_linked_from_the_incidents_list_the_service_page_and_the_overview(staff_client, incident):
    link = f'href="{page_url(incident)}"'
    assert link in staff_client.get("/incidents/").content.decode()
    assert link in staff_client.get("/services/db/").content.decode()
    assert link in staff_client.get("/").content.decode()  # the open incident's row
