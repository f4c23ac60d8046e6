"""Badges over HTTP: state and uptime SVGs and the shields.io endpoint JSON, only for services meant to be public,
with an ETag a client revalidates against (304)."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from django.utils import timezone

from health.models import ProbeResult
from tests.factories import ServiceFactory
from tests.status.status_fixtures import day_rollups, down_service, make_page

pytestmark = pytest.mark.django_db
SVG = "{http://www.w3.org/2000/svg}"


def svg_texts(content: bytes) -> list[str]:
    root = ET.fromstring(content)
    assert root.tag == f"{SVG}svg"
    return [t.text for t in root.iter(f"{SVG}text")]


def test_it_draws_the_state_badge_of_a_service_with_badge_true(client):
    ServiceFactory(name="web", status="up", badge=True)
    response = client.get("/badge/web.svg")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert svg_texts(response.content) == ["web", "up"]
    assert response["ETag"].startswith('"') and "max-age=60" in response["Cache-Control"]
    assert "public" in response["Cache-Control"]


def test_it_badges_a_service_listed_on_a_public_page(client):
    make_page("public", [down_service("db")])
    assert svg_texts(client.get("/badge/db.svg").content) == ["db", "down"]


@pytest.mark.parametrize(
    "url", ["/badge/{}.svg", "/badge/{}.json", "/badge/{}/uptime-24h.svg", "/badge/{}/uptime-7d.svg"]
)
def test_it_answers_404_for_a_service_not_meant_to_be_public(client, url):
    ServiceFactory(name="internal")  # badge false, on no page
    make_page("staff", [ServiceFactory(name="private-one")], public=False)
    for name in ("internal", "private-one", "no-such-service"):
        assert client.get(url.format(name)).status_code == 404, name


def test_it_refuses_an_unknown_uptime_window(client):
    ServiceFactory(name="web", badge=True)
    assert client.get("/badge/web/uptime-90d.svg").status_code == 404


def test_it_answers_the_shields_endpoint_schema(client):
    ServiceFactory(name="web", status="degraded", badge=True)
    response = client.get("/badge/web.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json() == {"schemaVersion": 1, "label": "web", "message": "degraded", "color": "yellow"}


def test_it_draws_the_uptime_badges_from_the_same_figures_as_the_uptime_api(client):
    web = ServiceFactory(name="web", status="up", badge=True)
    now = timezone.now()
    day_rollups(web, (now - dt.timedelta(days=5)).date(), up=9, down=1)
    for status in ("up", "up", "up", "down"):
        ProbeResult.objects.create(service=web, status=status, checked_at=now - dt.timedelta(minutes=1))

    assert svg_texts(client.get("/badge/web/uptime-24h.svg").content) == ["uptime 24h", "75%"]
    # 9 of 10 answered each hour of a day 5 days ago (rollups), 3 of 4 just now (raw rows).
    assert svg_texts(client.get("/badge/web/uptime-30d.svg").content) == ["uptime 30d", "89.75%"]
    # The health API's figure for the same window (HEALTH_PUBLIC: readable without login).
    api = client.get("/health/uptime?service=web").json()["services"]["web"]
    assert (api["24h"]["uptime"], api["30d"]["uptime"]) == (75.0, 89.754)


def test_it_says_no_data_for_a_service_never_probed(client):
    ServiceFactory(name="web", badge=True)
    assert svg_texts(client.get("/badge/web/uptime-7d.svg").content) == ["uptime 7d", "no data"]
    assert client.get("/badge/web.json").json()["message"] == "unknown"


@pytest.mark.parametrize("url", ["/badge/web.svg", "/badge/web.json", "/badge/web/uptime-7d.svg"])
def test_it_answers_304_to_a_matching_if_none_match(client, url):
    ServiceFactory(name="web", status="up", badge=True)
    first = client.get(url)
    etag = first["ETag"]

    again = client.get(url, HTTP_IF_NONE_MATCH=etag)

    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == etag and "max-age=60" in again["Cache-Control"]
    assert client.get(url, HTTP_IF_NONE_MATCH='"something-else"').status_code == 200


def test_its_etag_changes_with_the_state(client, settings):
    settings.STATUS_PAGE_CACHE_SECONDS = 0
    web = ServiceFactory(name="web", status="up", badge=True)
    etag = client.get("/badge/web.svg")["ETag"]
    web.status = "down"
    web.save()
    changed = client.get("/badge/web.svg", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and svg_texts(changed.content)[1] == "down"
    assert changed["ETag"] != etag
