"""summary.json in Atlassian Statuspage's shape (validated against a JSON schema of that format) and the Atom feed
(read by a real parser, feedparser)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import feedparser
import jsonschema
import pytest
from django.utils import timezone

from health.models import MaintenanceWindow
from tests.factories import ServiceFactory
from tests.status.status_fixtures import down_service, make_page, open_incident

pytestmark = pytest.mark.django_db
SCHEMA = json.loads((Path(__file__).parent / "statuspage_summary.schema.json").read_text())


def validate(document: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(document)


def test_its_schema_refuses_what_statuspage_readers_would_not_read():
    with pytest.raises(jsonschema.ValidationError):
        validate({"page": {}, "status": {"indicator": "none", "description": "x"}, "components": []})
    with pytest.raises(jsonschema.ValidationError, match="'up' is not one of"):
        validate(
            {
                "page": {
                    "id": "p",
                    "name": "P",
                    "url": "http://x/",
                    "time_zone": "UTC",
                    "updated_at": "2026-11-30T10:00:00Z",
                },
                "status": {"indicator": "up", "description": "x"},
                "components": [],
                "incidents": [],
                "scheduled_maintenances": [],
            }
        )


def test_it_answers_summary_json_in_the_statuspage_shape(client):
    api = ServiceFactory(name="api", status="up")
    db = down_service("db", critical=False)
    make_page("public", [api, db], display={"db": "Database"}, title="Example")
    incident = open_incident(
        db,
        severity="warning",
        updates=[("investigating", "Slow queries.", True), ("monitoring", "A fix is deployed.", True)],
    )
    now = timezone.now()
    MaintenanceWindow.objects.create(
        name="upgrade", service=api, starts_at=now + dt.timedelta(days=1), ends_at=now + dt.timedelta(days=1, hours=2)
    )

    response = client.get("/status/public/summary.json")

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    validate(body)
    assert body["page"]["name"] == "Example" and body["page"]["url"] == "http://testserver/status/public/"
    # A non-critical service HARD down: a partial outage overall, the component itself a major outage.
    assert body["status"] == {"indicator": "major", "description": "Partial outage"}
    assert [(c["name"], c["status"], c["position"]) for c in body["components"]] == [
        ("api", "operational", 1),
        ("Database", "major_outage", 2),
    ]
    [open_one] = body["incidents"]
    assert open_one["id"] == str(incident.pk) and open_one["status"] == "monitoring" and open_one["impact"] == "minor"
    assert [u["body"] for u in open_one["incident_updates"]] == ["A fix is deployed.", "Slow queries."]
    assert open_one["monitoring_at"] is not None and open_one["resolved_at"] is None
    assert open_one["components"][0]["name"] == "Database"
    [maintenance] = body["scheduled_maintenances"]
    assert maintenance["status"] == "scheduled" and maintenance["components"][0]["name"] == "api"
    assert maintenance["scheduled_until"] > maintenance["scheduled_for"]


def test_its_summary_lists_only_open_incidents_and_says_all_operational_when_all_is_up(client):
    web = ServiceFactory(name="web", status="up")
    make_page("public", [web])
    past = open_incident(web, updates=[("resolved", "done", True)])
    past.resolved_at = timezone.now()
    past.save()

    body = client.get("/status/public/summary.json").json()

    validate(body)
    assert body["status"] == {"indicator": "none", "description": "All systems operational"}
    assert body["incidents"] == []


def test_it_gives_a_page_without_services_a_valid_summary(client):
    make_page("empty", [])
    body = client.get("/status/empty/summary.json").json()
    validate(body)
    assert body["components"] == [] and body["status"]["indicator"] == "none"


def test_it_feeds_incidents_and_their_public_updates_as_atom(client):
    db = down_service("db")
    make_page("public", [db], display={"db": "Database"}, title="Example")
    open_incident(
        db,
        updates=[
            ("investigating", "Logins fail for some users.", True),
            ("identified", "staff-only: node db-7 lost its disk", False),
        ],
    )
    three_days_ago = timezone.now() - dt.timedelta(days=3)
    open_incident(
        db,
        opened_at=three_days_ago,
        resolved_at=three_days_ago + dt.timedelta(hours=1),
        updates=[("resolved", "Back.", True)],
    )

    response = client.get("/status/public/feed.atom")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert feed.feed.title == "Example: incidents"
    assert feed.feed.link == "http://testserver/status/public/"
    assert [e.title for e in feed.entries] == ["Database outage (investigating)", "Database outage (resolved)"]
    newest = feed.entries[0]
    assert "Logins fail for some users." in newest.summary
    assert "db-7" not in response.content.decode() and "staff-only" not in response.content.decode()
    assert newest.link.startswith("http://testserver/status/public/#incident-")
    assert "Back." in feed.entries[1].summary and "Resolved" in feed.entries[1].summary
