from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.models import ApiToken
from core.models import SchedulerHeartbeat
from health.models import Incident, Service
from health.runner import run_round
from recovery.models import RecoveryAction
from tests.api.api_support import bearer, make_service, make_user, staff_token, unreachable_database

pytestmark = pytest.mark.django_db

SERVICE_KEYS = {"kind", "status", "critical", "latencyMs", "lastCheckedAt", "consecutiveFailures", "detail"}
SECRET = "s3cr3t-h3-token-value"
LITERAL_SECRET = "literal-h3-api-key"


def set_state(service: Service, status: str, *, hard: bool = True, latency: float | None = 12.5) -> None:
    service.status = status
    service.state_type = "hard" if hard else "soft"
    service.last_latency_ms = latency
    service.last_checked_at = timezone.now()
    service.last_detail = f"{status} detail"
    service.consecutive_failures = 3 if status == "down" else 0
    service.save()


def test_it_answers_the_documented_structure(client):
    set_state(make_service("api"), "up")
    Incident.objects.create(service=make_service("worker", critical=False), cause="x")
    response = client.get("/health/status")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert {"status", "timestamp", "services", "database", "tunnels", "incidents", "recovery", "scheduler"} <= set(body)
    assert set(body["services"]) == {"api", "worker"}
    assert set(body["services"]["api"]) >= SERVICE_KEYS
    assert body["services"]["api"]["latencyMs"] == 12.5
    assert body["services"]["api"]["kind"] == "tcp"
    assert body["database"]["status"] == "up"
    assert {"state", "consecutiveFailures"} <= set(body["database"]["circuitBreaker"])
    assert body["incidents"] == {"open": 1}
    assert {"total", "successful", "failed", "successRate", "byService", "isRecovering"} <= set(body["recovery"])
    assert {"status", "lastRunAt", "lagSeconds"} <= set(body["scheduler"])
    # worker was never probed: not known to be up
    assert body["status"] == "degraded"


@pytest.mark.parametrize(
    ("critical", "status", "hard", "overall", "code"),
    [
        (True, "up", True, "healthy", 200),
        (True, "degraded", True, "degraded", 200),
        (False, "down", True, "degraded", 200),
        (True, "down", False, "degraded", 200),  # SOFT down is not yet down
        (True, "down", True, "down", 503),
    ],
)
def test_it_answers_503_only_when_a_critical_service_is_hard_down(client, critical, status, hard, overall, code):
    set_state(make_service("ok"), "up")
    set_state(make_service("target", critical=critical), status, hard=hard)
    response = client.get("/health/status")
    assert response.status_code == code
    assert response.json()["status"] == overall


def add_services(start: int, stop: int) -> None:
    now = timezone.now()
    Service.objects.bulk_create(
        Service(
            name=f"svc-{i}", kind="tcp", settings={"host": "127.0.0.1", "port": 9}, status="up", last_checked_at=now
        )
        for i in range(start, stop)
    )


def count_status_queries(client, count: int, django_assert_max_num_queries) -> int:
    # A bound with room for the other sections (recovery stats, scheduler), but far below one query per service.
    with django_assert_max_num_queries(15), CaptureQueriesContext(connection) as queries:
        response = client.get("/health/status")
    assert response.status_code == 200
    assert len(response.json()["services"]) == count
    return len(queries)


def test_it_reads_a_constant_number_of_queries_for_5_and_500_services(client, django_assert_max_num_queries):
    add_services(0, 5)
    with_5 = count_status_queries(client, 5, django_assert_max_num_queries)
    add_services(5, 500)
    with_500 = count_status_queries(client, 500, django_assert_max_num_queries)
    assert with_5 == with_500


def test_it_answers_a_json_503_with_the_database_down_when_it_is_unreachable(client):
    set_state(make_service("api"), "up")
    with unreachable_database():
        response = client.get("/health/status")
        health_json = client.get("/health/status", HTTP_ACCEPT="application/health+json")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "down"
    assert body["database"]["status"] == "down"
    assert body["database"]["latencyMs"] is None
    assert body["services"] == {}
    assert "services" in body["unavailable"]
    assert health_json.status_code == 503
    assert health_json.json()["status"] == "fail"
    assert health_json.json()["checks"]["portalDatabase:status"][0]["status"] == "fail"


def test_it_answers_health_json_in_the_ietf_format(client):
    checked = timezone.now() - timedelta(seconds=5)
    api = make_service("api")
    set_state(api, "up", latency=42.0)
    Service.objects.filter(pk=api.pk).update(last_checked_at=checked, last_detail="HTTP 200")
    set_state(make_service("cache", critical=False), "degraded", latency=2500.0)
    make_service("fresh")  # never probed: no latency
    pg = make_service("pg", kind="postgres", settings={"dsn_env": "H3_PG_DSN"}, critical=False)
    set_state(pg, "down", latency=None)

    response = client.get("/health/status", HTTP_ACCEPT="application/health+json")
    assert response.status_code == 200  # pg is not critical: warn, not fail
    assert response["Content-Type"] == "application/health+json"
    body = response.json()
    assert body["status"] == "warn"
    assert body["serviceId"] == "opsportal"
    assert isinstance(body["version"], str)
    checks = body["checks"]
    assert set(checks) == {
        "api:responseTime",
        "cache:responseTime",
        "fresh:status",
        "pg:status",
        "portalDatabase:responseTime",
    }
    assert all(isinstance(v, list) and len(v) == 1 for v in checks.values())
    api_check = checks["api:responseTime"][0]
    assert api_check == {
        "componentId": "api",
        "componentType": "component",
        "observedValue": 42.0,
        "observedUnit": "ms",
        "status": "pass",
        "time": checked.isoformat(),
        "output": "HTTP 200",
    }
    assert checks["cache:responseTime"][0]["status"] == "warn"
    assert checks["cache:responseTime"][0]["observedValue"] == 2500.0
    assert checks["fresh:status"][0]["observedValue"] == "unknown"
    assert "observedUnit" not in checks["fresh:status"][0]
    assert checks["fresh:status"][0]["time"] is None
    assert checks["pg:status"][0]["componentType"] == "datastore"
    assert checks["pg:status"][0]["status"] == "fail"
    assert checks["pg:status"][0]["output"] == "down detail"
    assert checks["portalDatabase:responseTime"][0]["status"] == "pass"
    assert "cache" in body["output"] and "pg" in body["output"]


def test_it_answers_health_json_fail_with_503(client):
    set_state(make_service("api"), "down")
    response = client.get("/health/status", HTTP_ACCEPT="application/json;q=0.5, application/health+json")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/health+json"
    assert response.json()["status"] == "fail"
    assert response.json()["checks"]["api:responseTime"][0]["status"] == "fail"


def test_it_answers_health_json_pass_without_output(client):
    set_state(make_service("api"), "up")
    body = client.get("/health/status", HTTP_ACCEPT="application/health+json").json()
    assert body["status"] == "pass"
    assert "output" not in body


def test_it_never_shows_a_secret_from_a_service_config(client, http_server, monkeypatch, settings):
    settings.AUTO_RECOVERY_ENABLED = False
    monkeypatch.setenv("H3_SECRET", SECRET)
    # The server answers with the credentials it received, so a careless probe detail would leak them.
    from tests.servers import Reply

    http_server.handler = lambda request: Reply(
        500, f"denied {request['headers'].get('Authorization')} {request['headers'].get('X-Api-Key')}"
    )
    service = make_service(
        "billing",
        kind="http",
        settings={
            "url": http_server.url + "/",
            "headers": {"Authorization": "Bearer ${H3_SECRET}", "X-Api-Key": LITERAL_SECRET},
        },
        failure_threshold=1,
    )
    RecoveryAction.objects.create(
        service=service,
        kind="http",
        settings={"url": http_server.url + "/restart", "headers": {"Authorization": "Bearer ${H3_SECRET}"}},
        verify_delay=0,
    )
    # A command whose output (shown as the probe's detail) carries the secret it was given.
    script = "import os; print('token', os.environ['TOKEN']); raise SystemExit(2)"
    job = make_service(
        "nightly-job",
        kind="command",
        settings={"argv": [sys.executable, "-c", script], "env": {"TOKEN": "${H3_SECRET}"}},
        critical=False,
    )
    run_round([service, job])
    assert http_server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    token = staff_token()[1]
    recover = client.post(
        "/health/recover", {"services": ["billing"], "force": True}, "application/json", **bearer(token)
    )
    assert recover.status_code == 200
    assert [r["path"] for r in http_server.requests].count("/restart") == 1
    bodies = [recover.content.decode()] + [
        client.get(path, HTTP_ACCEPT=accept).content.decode()
        for path in ("/health/status", "/health/incidents", "/health/recovery-stats", "/metrics")
        for accept in ("application/json", "application/health+json")
    ]
    assert Service.objects.get(name="billing").status == "down"
    # The output does reach the answers, with the secret taken out.
    assert Service.objects.get(name="nightly-job").last_detail.startswith("exit 2: token ")
    assert any("exit 2: token " in body for body in bodies)
    for body in bodies:
        assert SECRET not in body
        assert LITERAL_SECRET not in body
        assert "H3_SECRET" not in body


def test_it_is_public_by_default(client):
    assert client.get("/health/status").status_code == 200


def test_it_needs_credentials_when_health_public_is_off(client, settings):
    settings.HEALTH_PUBLIC = False
    response = client.get("/health/status")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"].startswith("authentication required")

    row, token = ApiToken.issue(make_user("reader", staff=False), name="monitor")
    assert client.get("/health/status", **bearer(token)).status_code == 200
    assert client.get("/health/status", **bearer("ops_wrong")).status_code == 401

    client.force_login(make_user("visitor", staff=False))
    assert client.get("/health/status").status_code == 403
    client.force_login(make_user("operator"))
    assert client.get("/health/status").status_code == 200
    # live and ready stay public
    client.logout()
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code == 200


def test_it_refuses_post_with_405(client):
    response = client.post("/health/status")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_it_reports_a_late_scheduler_and_is_degraded_then(client):
    set_state(make_service("api"), "up")
    SchedulerHeartbeat.objects.create(name="dispatcher", last_run_at=timezone.now() - timedelta(minutes=10))
    response = client.get("/health/status")
    assert response.status_code == 200
    body = response.json()
    assert body["scheduler"]["status"] == "late"
    assert body["scheduler"]["lagSeconds"] >= 600
    assert body["status"] == "degraded"


def test_it_shows_the_outage_spool_with_the_database_up_or_down(client, settings, tmp_path):
    from core.spool import default_spool

    settings.VAR_DIR = tmp_path
    assert default_spool().append("create", {"model": "health.Event", "fields": {"title": "waiting"}})
    up = client.get("/health/status").json()["database"]
    assert up["spool"] == {"bytes": default_spool().size(), "records": 1, "dropped": 0}
    with unreachable_database():
        down = client.get("/health/status").json()["database"]
    assert down["status"] == "down"
    assert down["spool"] == up["spool"]  # files of this host: known without the database


@pytest.mark.django_db
@pytest.mark.parametrize("cache", [0, 2])
def test_it_shows_a_push_services_ping_url_to_staff_only(client, settings, cache):
    settings.STATUS_CACHE_SECONDS = cache
    settings.PUBLIC_URL = "https://ops.example.test/"
    job = make_service("backup", kind="push", settings={"period": 3600})
    make_service("web")
    url = f"https://ops.example.test/ping/{job.ping_uuid}"
    public = client.get("/health/status").json()["services"]
    assert "pingUrl" not in public["backup"] and str(job.ping_uuid) not in str(public)
    _, token = staff_token()
    by_token = client.get("/health/status", **bearer(token)).json()["services"]
    assert by_token["backup"]["pingUrl"] == url
    assert "pingUrl" not in by_token["web"]
    _, outsider = staff_token("viewer", staff=False)
    assert "pingUrl" not in client.get("/health/status", **bearer(outsider)).json()["services"]["backup"]
    assert "pingUrl" not in client.get("/health/status", **bearer("wrong")).json()["services"]["backup"]
    client.force_login(make_user("staffer", staff=True))
    assert client.get("/health/status").json()["services"]["backup"]["pingUrl"] == url


@pytest.mark.django_db
@pytest.mark.parametrize("cache", [0, 2])
def test_it_lists_each_services_tags(client, settings, cache):
    settings.STATUS_CACHE_SECONDS = cache
    make_service("web", tags=["edge", "eu-west"])
    make_service("cache")
    services = client.get("/health/status").json()["services"]
    assert services["web"]["tags"] == ["edge", "eu-west"]
    assert services["cache"]["tags"] == []
