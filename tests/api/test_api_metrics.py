from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from health.models import Incident, Service
from recovery.models import RecoveryAttempt
from tests.api.api_support import bearer, make_service, make_user, staff_token, unreachable_database
from tunnels.models import Tunnel, TunnelEvent

pytestmark = pytest.mark.django_db


def samples(response) -> dict[tuple[str, tuple], float]:
    text = response.content.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def state():
    now = timezone.now()
    api = make_service("api", status="up", last_latency_ms=250.0, last_checked_at=now)
    db = make_service(
        "db", status="down", state_type="hard", consecutive_failures=4, last_latency_ms=None, last_checked_at=now
    )
    Incident.objects.create(service=db, cause="refused")
    for outcome in ("succeeded", "succeeded", "failed"):
        RecoveryAttempt.objects.create(service=db, trigger="auto", outcome=outcome)
    tunnel = Tunnel.objects.create(name="main", command=["cloudflared", "tunnel", "run"])
    TunnelEvent.objects.create(tunnel=tunnel, kind=TunnelEvent.Kind.RESTARTED)
    TunnelEvent.objects.create(tunnel=tunnel, kind=TunnelEvent.Kind.RESTARTED)
    TunnelEvent.objects.create(tunnel=tunnel, kind=TunnelEvent.Kind.CHECK_OK)
    return api, db


def test_it_exposes_the_portal_state_in_prometheus_text_format(client, state):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response)
    assert value(found, "opsportal_database_up") == 1
    assert value(found, "opsportal_service_up", service="api", kind="tcp", critical="true") == 1
    assert value(found, "opsportal_service_up", service="db", kind="tcp", critical="true") == 0
    assert value(found, "opsportal_service_latency_seconds", service="api") == 0.25
    assert ("opsportal_service_latency_seconds", (("service", "db"),)) not in found
    assert value(found, "opsportal_service_consecutive_failures", service="db") == 4
    assert value(found, "opsportal_service_status", service="db", status="down") == 1
    assert value(found, "opsportal_status", status="down") == 1  # db is critical and HARD down
    assert value(found, "opsportal_status", status="healthy") == 0
    assert value(found, "opsportal_incidents_open") == 1
    assert value(found, "opsportal_recovery_attempts_total", outcome="succeeded") == 2
    assert value(found, "opsportal_recovery_attempts_total", outcome="failed") == 1
    assert value(found, "opsportal_recovery_attempts_total", outcome="skipped_cooldown") == 0
    assert value(found, "opsportal_tunnel_restarts_total", tunnel="main") == 2


def test_it_reads_a_constant_number_of_queries(client, state):
    with CaptureQueriesContext(connection) as few:
        client.get("/metrics")
    Service.objects.bulk_create(
        Service(name=f"svc-{i}", kind="tcp", settings={"host": "127.0.0.1", "port": 9}) for i in range(200)
    )
    with CaptureQueriesContext(connection) as many:
        response = client.get("/metrics")
    assert len(few) == len(many)
    assert ("opsportal_service_consecutive_failures", (("service", "svc-199"),)) in samples(response)


def test_it_reports_the_database_down_instead_of_failing(client, state):
    with unreachable_database():
        response = client.get("/metrics")
    assert response.status_code == 200
    found = samples(response)
    assert found[("opsportal_database_up", ())] == 0.0
    # Only what is known without the database: this process's circuit breaker, this host's outage spool.
    assert {name for name, _ in found} == {
        "opsportal_database_up",
        "opsportal_database_circuit_breaker_state",
        "opsportal_database_circuit_breaker_failures",
        "opsportal_spool_bytes",
        "opsportal_spool_records",
        "opsportal_spool_dropped_total",
    }


def test_it_exposes_the_circuit_breaker(client, state):
    from core.db import breaker

    found = samples(client.get("/metrics"))
    assert found[("opsportal_database_circuit_breaker_state", (("state", "closed"),))] == 1.0
    assert found[("opsportal_database_circuit_breaker_state", (("state", "open"),))] == 0.0
    assert found[("opsportal_database_circuit_breaker_failures", ())] == breaker.fail_counter


def test_it_is_public_by_default_and_protected_by_metrics_token(client, settings, state):
    assert client.get("/metrics").status_code == 200
    settings.METRICS_TOKEN = "scrape-h3-token"
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"].startswith("authentication required")
    assert client.get("/metrics", **bearer("wrong")).status_code == 401
    assert client.get("/metrics", **bearer("scrape-h3-token")).status_code == 200
    # an API token works too
    assert client.get("/metrics", **bearer(staff_token()[1])).status_code == 200


def test_it_needs_credentials_when_health_public_is_off(client, settings, state):
    settings.HEALTH_PUBLIC = False
    assert client.get("/metrics").status_code == 401
    client.force_login(make_user("visitor", staff=False))
    assert client.get("/metrics").status_code == 403
    client.force_login(make_user("operator"))
    assert client.get("/metrics").status_code == 200


def test_it_refuses_post_with_405(client):
    response = client.post("/metrics")
    assert response.status_code == 405
    assert response.json()["error"].startswith("method POST not allowed")


@pytest.mark.django_db
def test_it_exposes_recovery_by_action_in_progress_and_escalation(client):
    from recovery.models import RecoveryState

    svc = Service.objects.create(name="api", kind="tcp", settings={"host": "127.0.0.1", "port": 1})
    RecoveryAttempt.objects.create(
        service=svc, trigger="auto", outcome="succeeded", action_kind="command", duration_ms=1500
    )
    RecoveryAttempt.objects.create(service=svc, trigger="auto", outcome="failed", action_kind="command")
    RecoveryAttempt.objects.create(service=svc, trigger="auto", outcome="in_progress", action_kind="command")
    RecoveryState.objects.update_or_create(service=svc, defaults={"escalated_at": timezone.now()})
    text = client.get("/metrics").content.decode()
    assert 'opsportal_recovery_action_attempts_total{action="command",result="succeeded"} 1.0' in text
    assert 'opsportal_recovery_action_attempts_total{action="command",result="failed"} 1.0' in text
    assert "opsportal_recovery_in_progress 1.0" in text
    assert "opsportal_recovery_mean_time_to_recover_seconds 1.5" in text
    assert 'opsportal_recovery_escalated{service="api"} 1.0' in text


def test_it_refuses_even_the_right_metrics_token_from_an_address_over_its_limit(client, settings):
    # Else a guesser over its limit could still learn METRICS_TOKEN from a 200 (a brute-force oracle).
    settings.METRICS_TOKEN = "scrape-h3-token"
    settings.API_BAD_TOKEN_LIMIT = 3
    for _ in range(3):  # each wrong guess counts once
        assert client.get("/metrics", REMOTE_ADDR="10.9.20.1", **bearer("wrong")).status_code == 401
    refused = client.get("/metrics", REMOTE_ADDR="10.9.20.1", **bearer("scrape-h3-token"))
    assert refused.status_code == 429 and refused["Retry-After"]
    assert client.get("/metrics", REMOTE_ADDR="10.9.20.2", **bearer("scrape-h3-token")).status_code == 200
