"""POST /api/v1/incidents/<id>/updates: token or session+CSRF, its permission, 400s naming the key."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from health import incidents
from health.incidents import MESSAGE_MAX
from health.models import Event, Incident, IncidentUpdate
from health.permissions import POST_INCIDENT_UPDATE
from notify import outbox
from notify.models import Channel
from tests.api.api_support import bearer, make_service, make_user, staff_token

pytestmark = pytest.mark.django_db


def url(pk: int) -> str:
    return f"/api/v1/incidents/{pk}/updates"


def post(client: Client, pk: int, body: object = None, *, raw: bytes | None = None, **headers: str):
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return client.generic("POST", url(pk), data, content_type="application/json", **headers)


def assert_error(response, status: int, contains: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert contains in body["error"], body["error"]


@pytest.fixture
def token() -> str:
    return staff_token(perms=(POST_INCIDENT_UPDATE,))[1]


@pytest.fixture
def incident() -> Incident:
    return Incident.objects.create(service=make_service("web"), cause="refused")


def nothing_written() -> bool:
    return not IncidentUpdate.objects.exists() and not Event.objects.exists()


def test_it_posts_an_update_and_answers_201_with_it(client, token, incident):
    response = post(client, incident.pk, {"status": "identified", "message": "Bad deploy"}, **bearer(token))
    assert response.status_code == 201
    body = response.json()
    update = IncidentUpdate.objects.get()
    assert body == {
        "id": update.pk,
        "incident": incident.pk,
        "service": "web",
        "createdAt": update.created_at.isoformat(),
        "status": "identified",
        "message": "Bad deploy",
        "public": True,
        "author": "ops",
        "incidentStatus": "open",
    }
    assert Event.objects.get().kind == Event.Kind.INCIDENT_UPDATE


def test_it_resolves_a_declared_incident_with_a_resolved_update(client, token):
    declared = incidents.declare(make_service("pay"), severity="warning", cause="provider slow", user=make_user("a"))
    response = post(client, declared.pk, {"status": "resolved", "message": "Provider fine"}, **bearer(token))
    assert response.status_code == 201
    assert response.json()["incidentStatus"] == "resolved"
    assert not Incident.objects.get(pk=declared.pk).is_open


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b"not json", "JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "'status' is required"),
        (json.dumps({"status": "identified"}).encode(), "'message' is required"),
        (json.dumps({"message": "hi"}).encode(), "'status' is required"),
        (json.dumps({"status": "fixed", "message": "hi"}).encode(), "'status' must be one of investigating"),
        (json.dumps({"status": "identified", "message": ""}).encode(), "'message' must be"),
        (json.dumps({"status": "identified", "message": 5}).encode(), "'message' must be"),
        (json.dumps({"status": "identified", "message": "x" * (MESSAGE_MAX + 1)}).encode(), "'message' must be"),
        (json.dumps({"status": "identified", "message": "hi", "public": "yes"}).encode(), "'public' must be"),
        (json.dumps({"status": "identified", "message": "hi", "severity": "x"}).encode(), "unknown key 'severity'"),
    ],
)
def test_it_refuses_a_bad_body_naming_the_key_and_writes_nothing(client, token, incident, raw, key):
    assert_error(post(client, incident.pk, raw=raw, **bearer(token)), 400, key)
    assert nothing_written()


def test_it_takes_a_message_of_exactly_the_bound(client, token, incident):
    response = post(client, incident.pk, {"status": "monitoring", "message": "x" * MESSAGE_MAX}, **bearer(token))
    assert response.status_code == 201


def test_it_answers_404_for_an_unknown_incident(client, token):
    assert_error(post(client, 4242, {"status": "identified", "message": "hi"}, **bearer(token)), 404, "4242")
    assert nothing_written()


def test_it_answers_401_without_credentials_and_403_naming_the_permission(client, incident):
    assert_error(post(client, incident.pk, {"status": "identified", "message": "hi"}), 401, "authentication")
    bare = staff_token("bare", perms=())[1]
    response = post(client, incident.pk, {"status": "identified", "message": "hi"}, **bearer(bare))
    assert_error(response, 403, "permission required: health.post_incident_update")
    assert nothing_written()


def test_it_needs_a_csrf_token_with_a_session(incident):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("operator", perms=(POST_INCIDENT_UPDATE,)))
    assert_error(post(client, incident.pk, {"status": "identified", "message": "hi"}), 403, "CSRF check failed")
    assert nothing_written()
    client.get("/admin/password_change/")  # a page that sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    response = post(client, incident.pk, {"status": "identified", "message": "hi"}, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201
    assert IncidentUpdate.objects.get().author.get_username() == "operator"


def test_it_answers_405_for_get(client, token, incident):
    assert_error(client.get(url(incident.pk), **bearer(token)), 405, "method GET not allowed")


def test_it_sends_public_updates_to_a_real_json_channel_and_keeps_internal_ones(client, token, incident, http_server):
    Channel.objects.create(name="ops", url=f"json://127.0.0.1:{http_server.port}/hook")
    first = post(client, incident.pk, {"status": "identified", "message": "Disk full on db-1"}, **bearer(token))
    internal = {"status": "monitoring", "message": "secret-ish internal note", "public": False}
    second = post(client, incident.pk, internal, **bearer(token))
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["public"] is False
    assert IncidentUpdate.objects.count() == 2
    outbox.process_outbox()
    sent = [json.loads(r["body"]) for r in http_server.requests if r["path"] == "/hook"]
    assert len(sent) == 1
    assert "Disk full on db-1" in sent[0]["message"]
    assert sent[0]["title"] == "web incident update: identified"
    assert not any("internal note" in json.dumps(m) for m in sent)


@pytest.mark.parametrize("path", ["/api/v1/incidents/-1/updates", "/api/v1/incidents/x/updates", "/api/v1/nothing"])
def test_it_answers_a_json_404_for_any_other_path_under_the_write_api(client, token, path):
    response = client.post(path, b"{}", content_type="application/json", **bearer(token))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"error"}
