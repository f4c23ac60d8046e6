from __future__ import annotations

import pytest
from django.test import Client

from health.models import Event, Incident, ProbeResult, Service
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.dashboard.dashboard_fixtures import make_service, staff_client, threads_may_read, user_client
from tests.servers import Reply, wait_for

__all__ = ["staff_client", "threads_may_read", "user_client"]

pytestmark = pytest.mark.django_db

POSTS = ["/services/api/probe/", "/services/api/recover/", "/services/api/pause/", "/incidents/1/acknowledge/"]


@pytest.mark.parametrize("url", POSTS)
def test_it_sends_anonymous_users_to_the_login_page(url):
    make_service("api")
    response = Client().post(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", POSTS)
def test_it_forbids_non_staff_and_changes_nothing(user_client, url):
    svc = make_service("api", status="down")
    Incident.objects.create(pk=1, service=svc)
    assert user_client.post(url, {"action": "pause"}).status_code == 403
    assert not Service.objects.get(pk=svc.pk).paused
    assert Incident.objects.get(pk=1).acknowledged_at is None


@pytest.mark.parametrize("url", ["/services/api/probe/", "/services/api/pause/", "/incidents/1/acknowledge/"])
def test_it_only_accepts_post_for_buttons(staff_client, url):
    make_service("api")
    assert staff_client.get(url).status_code == 405


def test_it_requires_csrf_on_buttons(db):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("ops2", password="x-not-used-9", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    make_service("api")
    assert client.post("/services/api/pause/", {"action": "pause"}).status_code == 403
    assert not Service.objects.get(name="api").paused


def test_it_probes_now_and_lands_back_with_a_message(staff_client, http_server):
    make_service("api", kind="http", settings={"url": http_server.url + "/health"}, status="unknown")
    response = staff_client.post("/services/api/probe/", {"next": "/services/api/?range=1h"}, follow=True)
    assert response.redirect_chain[-1][0] == "/services/api/?range=1h"
    assert "Probed api: up" in response.content.decode()
    assert ProbeResult.objects.filter(service__name="api", status="up").count() == 1
    assert Service.objects.get(name="api").status == "up"


def test_it_never_redirects_off_site(staff_client, http_server):
    make_service("api", kind="http", settings={"url": http_server.url})
    response = staff_client.post("/services/api/probe/", {"next": "https://evil.example/"})
    assert response["Location"] == "/services/api/"


def test_it_pauses_and_resumes(staff_client):
    make_service("api", status="down")
    response = staff_client.post("/services/api/pause/", {"action": "pause"}, follow=True)
    assert "api paused" in response.content.decode()
    svc = Service.objects.get(name="api")
    assert svc.paused and svc.status == "paused"
    response = staff_client.post("/services/api/pause/", {"action": "resume"}, follow=True)
    assert "api resumed" in response.content.decode()
    svc = Service.objects.get(name="api")
    assert not svc.paused and svc.status == "unknown"
    assert list(svc.state_changes.values_list("new_status", flat=True).order_by("pk")) == ["paused", "unknown"]


def test_it_rejects_a_bad_pause_action_and_changes_nothing(staff_client):
    make_service("api")
    response = staff_client.post("/services/api/pause/", {"action": "explode"})
    assert response.status_code == 400
    assert b"action must be pause or resume" in response.content
    assert not Service.objects.get(name="api").paused


def test_it_acknowledges_an_incident_once(staff_client):
    svc = make_service("api", status="down")
    incident = Incident.objects.create(service=svc, cause="refused")
    response = staff_client.post(f"/incidents/{incident.pk}/acknowledge/", follow=True)
    assert "Acknowledged the incident of api." in response.content.decode()
    incident.refresh_from_db()
    assert incident.acknowledged_by == staff_client.user and incident.acknowledged_at is not None
    again = staff_client.post(f"/incidents/{incident.pk}/acknowledge/", follow=True)
    assert "already acknowledged" in again.content.decode()
    assert Event.objects.filter(kind="incident_acknowledged", service=svc).count() == 1


def test_it_answers_404_for_an_unknown_incident(staff_client):
    assert staff_client.post("/incidents/999/acknowledge/").status_code == 404


def test_it_shows_the_cooldown_state_before_recovering(staff_client):
    svc = make_service("api", status="down")
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"]}, cooldown=300)
    body = staff_client.get("/services/api/recover/").content.decode()
    assert "Recover api?" in body
    assert "ready" in body
    assert 'name="force"' in body


@pytest.mark.slow("the recovery runs in a thread of this process (dispatch.manual): polled until verified")
def test_it_recovers_through_the_engine_and_records_the_attempt(threads_may_read, staff_client, http_server):
    fixed = {"yes": False}

    def handler(request):
        if request["path"] == "/fix":
            fixed["yes"] = True
            return Reply(200, "fixed")
        return Reply(200 if fixed["yes"] else 503, "state")

    def done(n: int) -> bool:
        return RecoveryAttempt.objects.filter(service=svc, outcome="succeeded").count() == n and not (
            RecoveryAttempt.objects.filter(service=svc, outcome="in_progress").exists()
        )

    http_server.handler = handler
    svc = make_service("api", kind="http", settings={"url": http_server.url + "/health"}, status="down")
    RecoveryAction.objects.create(
        service=svc, kind="http", settings={"url": http_server.url + "/fix", "method": "POST"}, verify_delay=0
    )
    response = staff_client.post("/services/api/recover/", {"next": "/services/api/"}, follow=True)
    assert "Recovery of api started" in response.content.decode()
    assert wait_for(lambda: done(1), timeout=15.0)
    attempt = RecoveryAttempt.objects.get(service=svc)
    assert (attempt.outcome, attempt.trigger, attempt.requested_by) == ("succeeded", "manual", staff_client.user)
    # A second press is inside the cooldown: recorded as a skip, and Force overrides it.
    again = staff_client.post("/services/api/recover/", follow=True).content.decode()
    assert "not started" in again and "cooldown" in again
    body = staff_client.get("/services/api/recover/").content.decode()
    assert "in cooldown" in body
    forced = staff_client.post("/services/api/recover/", {"force": "on"}, follow=True).content.decode()
    assert "Recovery of api started" in forced
    assert wait_for(lambda: done(2), timeout=15.0)
