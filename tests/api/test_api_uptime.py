"""GET /health/uptime: the dashboard's uptime figures as JSON, maintenance left out and counted apart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from health.models import ProbeResult
from tests.api.api_support import bearer, make_service, staff_token

pytestmark = pytest.mark.django_db


def results(service, *rows: tuple[str, bool]) -> None:
    now = timezone.now()
    ProbeResult.objects.bulk_create(
        ProbeResult(service=service, checked_at=now - timedelta(minutes=10 + i), status=status, maintenance=maint)
        for i, (status, maint) in enumerate(rows)
    )


def test_it_leaves_maintenance_out_and_says_how_much(client):
    web = make_service("web")
    results(web, ("up", False), ("up", False), ("degraded", False), ("down", False), ("down", True), ("down", True))
    body = client.get("/health/uptime").json()
    assert body["windows"] == ["24h", "7d", "30d"]
    # 3 of the 4 counted answered; the 2 down results in maintenance do not count either way.
    assert body["services"]["web"]["24h"] == {"uptime": 75.0, "counted": 4, "maintenance": 2}
    assert body["services"]["web"]["30d"] == body["services"]["web"]["24h"]


def test_it_shows_100_for_a_service_down_only_in_its_window_and_null_when_nothing_counted(client):
    resting, idle = make_service("resting"), make_service("idle")
    results(resting, ("up", False), ("down", True), ("down", True))
    body = client.get("/health/uptime").json()["services"]
    assert body["resting"]["7d"] == {"uptime": 100.0, "counted": 1, "maintenance": 2}
    assert body["idle"]["7d"] == {"uptime": None, "counted": 0, "maintenance": 0}
    assert idle.name in body


def test_it_answers_for_one_service_and_404s_an_unknown_one(client):
    results(make_service("api"), ("up", False))
    make_service("db")
    assert list(client.get("/health/uptime?service=api").json()["services"]) == ["api"]
    missing = client.get("/health/uptime?service=nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]
    bad = client.get("/health/uptime", {"service": "../etc"})
    assert bad.status_code == 400 and "error" in bad.json()


def test_it_needs_credentials_when_health_is_not_public(client, settings):
    settings.HEALTH_PUBLIC = False
    make_service("web")
    assert client.get("/health/uptime").status_code == 401
    assert client.get("/health/uptime", **bearer(staff_token()[1])).status_code == 200
    assert client.post("/health/uptime").status_code == 405


@pytest.mark.parametrize("value", ["", "Bad", "api\n", " api"])
def test_it_answers_400_for_an_empty_or_invalid_service_name(client, value):
    make_service("api")
    response = client.get("/health/uptime", {"service": value})
    assert response.status_code == 400
    assert response.json()["error"].startswith("'service' must be a service name")
