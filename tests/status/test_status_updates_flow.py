"""Incident updates posted through the write API and the dashboard appear on the status pages that list the
service (HTML, summary.json, feed), internal ones nowhere: the two faces and the page end to end."""

from __future__ import annotations

import json

import feedparser
import pytest

from health.permissions import DECLARE_INCIDENT, POST_INCIDENT_UPDATE
from tests.api.api_support import bearer, make_user, staff_token
from tests.factories import ServiceFactory
from tests.status.status_fixtures import make_page, open_incident

pytestmark = pytest.mark.django_db


def test_it_shows_api_and_dashboard_updates_on_the_page_and_never_an_internal_one(client, settings):
    settings.STATUS_PAGE_CACHE_SECONDS = 0
    web = ServiceFactory(name="web", status="down", state_type="hard")
    other = ServiceFactory(name="billing", status="down", state_type="hard")
    make_page("public", [web])
    incident = open_incident(web)
    unlisted = open_incident(other)
    _, token = staff_token(perms=(POST_INCIDENT_UPDATE,))
    for pk, status, message, public in [
        (incident.pk, "identified", "A bad deploy; rolling back.", True),
        (incident.pk, "monitoring", "internal: pager says db-7", False),
        (unlisted.pk, "investigating", "Billing is slow.", True),
    ]:
        body = json.dumps({"status": status, "message": message, "public": public})
        answer = client.post(f"/api/v1/incidents/{pk}/updates", body, content_type="application/json", **bearer(token))
        assert answer.status_code == 201, answer.content
    operator = make_user("operator", staff=True, perms=(POST_INCIDENT_UPDATE, DECLARE_INCIDENT))
    client.force_login(operator)
    posted = client.post(
        f"/incidents/{incident.pk}/update/", {"status": "monitoring", "message": "Fix deployed.", "public": "on"}
    )
    assert posted.status_code == 302
    client.logout()

    html = client.get("/status/public/").content.decode()
    summary = client.get("/status/public/summary.json").json()
    feed = feedparser.parse(client.get("/status/public/feed.atom").content)

    assert "A bad deploy; rolling back." in html and "Fix deployed." in html
    [shown] = summary["incidents"]
    assert [u["body"] for u in shown["incident_updates"]] == ["Fix deployed.", "A bad deploy; rolling back."]
    feed_text = json.dumps([dict(e) for e in feed.entries], default=str)
    assert "A bad deploy" in feed_text and "Fix deployed." in feed_text
    for page in (html, json.dumps(summary), feed_text):
        assert "internal: pager" not in page and "Billing is slow." not in page and "billing" not in page
