"""The dashboard's incident forms (dashboard.incident_forms) and the incident page's actions include."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.messages import get_messages
from django.template.loader import render_to_string
from django.test import Client, RequestFactory

from health import incidents
from health.incidents import MESSAGE_MAX
from health.models import Event, Incident, IncidentUpdate
from health.permissions import DECLARE_INCIDENT, POST_INCIDENT_UPDATE
from health.spec import UPDATE_STATUSES
from notify import outbox
from notify.models import Channel
from tests.dashboard.dashboard_fixtures import make_service, staff_client, user_client
from tests.factories import make_user

__all__ = ["staff_client", "user_client"]

pytestmark = pytest.mark.django_db


def said(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def incident() -> Incident:
    return Incident.objects.create(service=make_service("web", status="down"), cause="refused")


@pytest.fixture
def declared(staff_client) -> Incident:
    return incidents.declare(make_service("pay"), severity="warning", cause="provider slow", user=staff_client.user)


def client_with(*perms: str) -> Client:
    client = Client()
    client.force_login(make_user("limited", perms=perms))
    return client


def test_it_posts_an_update_and_lands_on_the_incident_page(staff_client, incident):
    response = staff_client.post(
        f"/incidents/{incident.pk}/update/", {"status": "identified", "message": "Bad deploy", "public": "on"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/incidents/{incident.pk}/"
    assert said(response) == ["Posted a public update (identified) on the incident of web."]
    update = IncidentUpdate.objects.get()
    assert (update.status, update.message, update.public, update.author) == (
        "identified",
        "Bad deploy",
        True,
        staff_client.user,
    )


def test_it_sends_a_dashboard_update_to_a_real_json_channel_and_not_an_internal_one(
    staff_client, incident, http_server
):
    Channel.objects.create(name="ops", url=f"json://127.0.0.1:{http_server.port}/hook")
    staff_client.post(
        f"/incidents/{incident.pk}/update/", {"status": "monitoring", "message": "Fix deployed", "public": "on"}
    )
    staff_client.post(f"/incidents/{incident.pk}/update/", {"status": "monitoring", "message": "internal only"})
    assert list(IncidentUpdate.objects.values_list("public", flat=True)) == [True, False]
    outbox.process_outbox()
    sent = [json.loads(r["body"]) for r in http_server.requests if r["path"] == "/hook"]
    assert len(sent) == 1
    assert "Fix deployed" in sent[0]["message"]
    assert not any("internal only" in json.dumps(m) for m in sent)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"status": "fixed", "message": "hi"}, "status"),
        ({"status": "identified", "message": ""}, "message"),
        ({"status": "identified", "message": "x" * (MESSAGE_MAX + 1)}, "message"),
    ],
)
def test_it_shows_a_bad_update_again_with_its_error_and_writes_nothing(staff_client, incident, data, field):
    response = staff_client.post(f"/incidents/{incident.pk}/update/", data)
    assert response.status_code == 400
    body = response.content.decode()
    assert f"{field}:" in body
    assert 'name="csrfmiddlewaretoken"' in body
    assert not IncidentUpdate.objects.exists()
    assert not Event.objects.exists()


def test_it_resolves_a_declared_incident_with_a_resolved_update(staff_client, declared):
    response = staff_client.post(f"/incidents/{declared.pk}/update/", {"status": "resolved", "message": "Fine now"})
    assert said(response) == [
        "Posted an internal update (resolved) on the incident of pay. The declared incident is resolved."
    ]
    assert not Incident.objects.get(pk=declared.pk).is_open


def test_it_declares_an_incident_from_the_service_page(staff_client):
    make_service("pay")
    page = staff_client.get("/services/pay/")
    assert 'href="/services/pay/declare/"' in page.content.decode()
    form = staff_client.get("/services/pay/declare/")
    assert form.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in form.content.decode()
    response = staff_client.post(
        "/services/pay/declare/",
        {"severity": "critical", "cause": "Card provider degraded", "message": "Checking", "public": "on"},
    )
    incident = Incident.objects.get(service__name="pay")
    assert response["Location"] == f"/incidents/{incident.pk}/"
    assert said(response) == ["Declared an incident on pay: Card provider degraded"]
    assert (incident.severity, incident.declared_by, incident.is_open) == ("critical", staff_client.user, True)
    assert incident.updates.get().message == "Checking"


def test_it_refuses_to_declare_a_second_open_incident(staff_client, incident):
    response = staff_client.post("/services/web/declare/", {"severity": "warning", "cause": "another"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "web already has an open incident" in body
    assert f'href="/incidents/{incident.pk}/"' in body
    assert Incident.objects.count() == 1


def test_it_refuses_a_declaration_without_a_cause(staff_client):
    make_service("pay")
    response = staff_client.post("/services/pay/declare/", {"severity": "warning", "cause": ""})
    assert response.status_code == 400
    assert not Incident.objects.exists()


def test_it_closes_a_declared_incident_once(staff_client, declared):
    response = staff_client.post(f"/incidents/{declared.pk}/close/", {"message": "All clear", "public": "on"})
    assert response["Location"] == f"/incidents/{declared.pk}/"
    assert said(response) == ["Closed the declared incident of pay."]
    declared.refresh_from_db()
    assert not declared.is_open
    assert declared.updates.get().status == "resolved"
    again = staff_client.post(f"/incidents/{declared.pk}/close/", {})
    assert said(again)[-1] == "The incident of pay was already resolved."  # the first is still unread
    assert Event.objects.filter(kind="incident_resolved").count() == 1


def test_it_refuses_to_close_a_probe_driven_incident(staff_client, incident):
    response = staff_client.post(f"/incidents/{incident.pk}/close/", {})
    assert response.status_code == 400
    assert "only a declared incident is closed by hand" in response.content.decode()
    assert Incident.objects.get(pk=incident.pk).is_open


def test_it_saves_a_postmortem_only_after_resolution(staff_client, declared):
    early = staff_client.post(f"/incidents/{declared.pk}/postmortem/", {"postmortem": "Too soon"})
    assert early.status_code == 400
    assert "only after the incident is resolved" in early.content.decode()
    assert Incident.objects.get(pk=declared.pk).postmortem == ""
    incidents.close(declared, user=staff_client.user)
    response = staff_client.post(f"/incidents/{declared.pk}/postmortem/", {"postmortem": "Certificate expired."})
    assert response["Location"] == f"/incidents/{declared.pk}/"
    assert Incident.objects.get(pk=declared.pk).postmortem == "Certificate expired."


def test_it_checks_each_forms_permission_and_names_it(incident):
    only_updates = client_with(POST_INCIDENT_UPDATE)
    assert only_updates.post(f"/incidents/{incident.pk}/close/").status_code == 403
    refused = only_updates.post("/services/web/declare/", {"severity": "warning", "cause": "x"})
    assert refused.status_code == 403
    assert DECLARE_INCIDENT in refused.content.decode()
    only_declare = Client()
    only_declare.force_login(make_user("declarer", perms=(DECLARE_INCIDENT,)))
    response = only_declare.post(f"/incidents/{incident.pk}/update/", {"status": "identified", "message": "hi"})
    assert response.status_code == 403
    assert POST_INCIDENT_UPDATE in response.content.decode()
    assert not IncidentUpdate.objects.exists()


@pytest.mark.parametrize("path", ["update/", "postmortem/", "close/"])
def test_it_refuses_non_staff_anonymous_and_get(user_client, staff_client, incident, path):
    url = f"/incidents/{incident.pk}/{path}"
    assert user_client.post(url, {"status": "identified", "message": "hi"}).status_code == 403
    anonymous = Client().post(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert staff_client.get(url).status_code == 405
    assert staff_client.post("/incidents/999999/" + path, {}).status_code == 404
    assert not IncidentUpdate.objects.exists()


def test_it_requires_csrf_on_the_forms(incident):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("careful", perms=(POST_INCIDENT_UPDATE, DECLARE_INCIDENT)))
    assert (
        client.post(f"/incidents/{incident.pk}/update/", {"status": "identified", "message": "hi"}).status_code == 403
    )
    assert client.post("/services/web/declare/", {"severity": "warning", "cause": "x"}).status_code == 403
    assert not IncidentUpdate.objects.exists()
    page = client.get("/services/web/declare/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    ok = client.post(
        f"/incidents/{incident.pk}/update/", {"status": "identified", "message": "hi", "csrfmiddlewaretoken": token}
    )
    assert ok.status_code == 302
    assert IncidentUpdate.objects.count() == 1


def actions_html(incident: Incident, user) -> str:
    request = RequestFactory().get(f"/incidents/{incident.pk}/")
    request.user = user
    return render_to_string("dashboard/_incident_actions.html", {"incident": incident}, request=request)


def test_it_shows_the_actions_a_user_may_take(incident, declared):
    operator = make_user("operator", perms=(POST_INCIDENT_UPDATE, DECLARE_INCIDENT))
    html = actions_html(declared, operator)
    assert f'action="/incidents/{declared.pk}/update/"' in html
    assert f'action="/incidents/{declared.pk}/close/"' in html
    assert "postmortem/" not in html  # not resolved yet
    assert html.count('name="csrfmiddlewaretoken"') == 2
    assert re.findall(r'<option value="([a-z]+)"', html) == list(UPDATE_STATUSES)
    # A probe-driven incident has no Close; a resolved one has the postmortem form.
    assert "/close/" not in actions_html(incident, operator)
    incidents.close(declared, user=operator)
    incidents.set_postmortem(declared, "It was the provider.")
    resolved = actions_html(Incident.objects.get(pk=declared.pk), operator)
    assert f'action="/incidents/{declared.pk}/postmortem/"' in resolved
    assert "It was the provider.</textarea>" in resolved
    assert "/close/" not in resolved
    # Staff without the permissions: nothing to press.
    assert "<form" not in actions_html(incident, make_user("reader"))


def test_it_hides_the_declare_link_without_the_permission(incident):
    reader = Client()
    reader.force_login(make_user("reader"))
    assert "/declare/" not in reader.get("/services/web/").content.decode()
