from __future__ import annotations

import pytest
from django.test import Client

from health.models import Incident, Ping, ProbeResult
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.dashboard.dashboard_fixtures import make_results, make_service, make_world, staff_client, user_client

__all__ = ["staff_client", "user_client"]

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("suffix", ["", "live/", "recover/"])
def test_it_sends_anonymous_users_to_the_login_page(suffix):
    make_service("api")
    response = Client().get(f"/services/api/{suffix}")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("suffix", ["", "live/", "recover/"])
def test_it_forbids_non_staff(user_client, suffix):
    make_service("api")
    assert user_client.get(f"/services/api/{suffix}").status_code == 403


def test_it_answers_404_for_an_unknown_service(staff_client):
    response = staff_client.get("/services/nope/")
    assert response.status_code == 404
    assert b"Not found" in response.content


@pytest.mark.parametrize("range_key", ["1h", "24h", "7d", "30d"])
def test_it_renders_the_latency_chart_for_each_range(staff_client, range_key):
    svc = make_service("api")
    make_results(svc, ["up"] * 30)
    response = staff_client.get(f"/services/api/?range={range_key}")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'class="chart"' in body
    assert '<path class="p50"' in body or '<circle class="p50"' in body
    assert f'href="?range={range_key}" aria-current="true"' in body


def test_it_rejects_an_unknown_range_with_a_clear_error(staff_client):
    make_service("api")
    response = staff_client.get("/services/api/?range=2y")
    assert response.status_code == 400
    assert b"range must be one of 1h, 24h, 7d, 30d" in response.content


def test_it_paginates_probe_results(staff_client):
    svc = make_service("api")
    make_results(svc, ["up"] * 120)
    first = staff_client.get("/services/api/").content.decode()
    assert "Page 1 of 3" in first
    assert 'Probe results <span class="count">120</span>' in first
    third = staff_client.get("/services/api/?page=3").content.decode()
    assert "Page 3 of 3" in third
    assert third.count("<td>") < first.count("<td>")


def test_it_masks_secrets_in_the_config(staff_client, monkeypatch):
    make_service(
        "api",
        kind="http",
        settings={
            "url": "https://user:hunter2pw@example.org/health?token=abc123secret",
            "headers": {"Authorization": "Bearer ${API_KEY}", "X-Plain": "visible-but-header"},
        },
    )
    svc = make_service("pg", kind="postgres", settings={"dsn_env": "PG_DSN", "password_env": "PG_PASSWORD"})
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"], "env": {"TOKEN": "s3cr3t"}})
    body = staff_client.get("/services/api/").content.decode()
    for secret in ("hunter2pw", "abc123secret", "API_KEY", "visible-but-header"):
        assert secret not in body
    assert "example.org/health" in body
    pg = staff_client.get("/services/pg/").content.decode()
    assert "PG_DSN" in pg  # the name of a variable is not a secret
    assert "s3cr3t" not in pg


def test_it_shows_incidents_and_recovery_attempts(staff_client):
    svc = make_service("api", status="down", last_error="refused")
    Incident.objects.create(service=svc, cause="refused")
    RecoveryAttempt.objects.create(service=svc, trigger="manual", outcome="failed", detail="not fixed: still down")
    body = staff_client.get("/services/api/").content.decode()
    assert "not fixed: still down" in body
    assert "<strong>open</strong>" in body


def test_it_uses_a_bounded_number_of_queries_whatever_the_number_of_results(
    staff_client, django_assert_max_num_queries
):
    svc = make_service("api")
    make_results(svc, ["up", "down"])
    with django_assert_max_num_queries(22) as few:  # 21: + the recovery progress (dispatch.manual)
        assert staff_client.get("/services/api/?range=7d").status_code == 200
    make_results(svc, ["up", "degraded", "down"] * 400, step_s=300)
    make_world(30)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert staff_client.get("/services/api/?range=7d").status_code == 200
    assert ProbeResult.objects.filter(service=svc).count() == 1202


def test_it_serves_the_live_partial(staff_client):
    svc = make_service("api", status="down")
    make_results(svc, ["down"])
    body = staff_client.get("/services/api/live/?range=1h").content.decode()
    assert "api: down" in body
    assert "<html" not in body


def test_it_shows_a_heartbeats_ping_url_and_its_last_pings_escaped(staff_client, settings):
    settings.PUBLIC_URL = "https://ops.example.org"
    service = make_service("backup", kind="push", settings={"period": 60})
    Ping.objects.create(service_id=service.ping_uuid, kind="fail", exit_status=3, body="<script>alert(1)</script>")
    page = staff_client.get("/services/backup/").content.decode()
    assert f"https://ops.example.org/ping/{service.ping_uuid}" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    other = staff_client.get(f"/services/{make_service('web').name}/").content.decode()
    assert "/ping/" not in other
