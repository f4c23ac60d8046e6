from __future__ import annotations

import pytest
import requests
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, given, settings

from api.openapi import build_openapi
from health.models import Incident
from recovery.models import RecoveryAttempt
from tests.api.api_support import make_service, staff_token

# The live server needs committed rows: a transactional database.
pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = 15  # per operation: bounded, so the run stays a few seconds


@pytest.fixture
def populated():
    now = timezone.now()
    api = make_service("api", status="up", last_latency_ms=12.0, last_checked_at=now, last_detail="connected")
    db = make_service("db", status="down", critical=False, last_checked_at=now, consecutive_failures=2)
    make_service("new")
    Incident.objects.create(service=db, cause="refused")
    RecoveryAttempt.objects.create(service=api, trigger="auto", outcome="succeeded", finished_at=now)
    return staff_token()[1]


def test_it_serves_the_document_with_every_endpoint(client):
    response = client.get("/health/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    document = response.json()
    assert document == build_openapi()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/health/live",
        "/health/ready",
        "/health/status",
        "/health/recovery-stats",
        "/health/recover",
        "/health/incidents",
        "/health/incidents/{id}",
        "/health/uptime",
        "/health/openapi.json",
        "/metrics",
        "/api/v1/incidents/{id}/updates",
    }


@pytest.mark.slow("schemathesis calls every endpoint with generated requests")
def test_it_matches_what_the_endpoints_answer(live_server, populated):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/health/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the operation that serves the document itself
    assert len(operations) == len(build_openapi()["paths"]) - 1
    session = requests.Session()
    checked: dict[str, int] = {}
    for operation in operations:
        for headers in ({}, {"Authorization": f"Bearer {populated}"}):
            exercise(operation, live_server.url, session, headers, checked)
    session.close()
    assert set(checked) == {op.label for op in operations}
    assert all(n >= 1 for n in checked.values())


def exercise(operation, base_url: str, session: requests.Session, headers: dict, checked: dict[str, int]) -> None:
    """Generated requests to one operation; every response must match the document (status, type, schema)."""

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case) -> None:
        case.call_and_validate(base_url=base_url, session=session, headers=headers)
        checked[operation.label] = checked.get(operation.label, 0) + 1

    check()


def test_it_documents_force_and_services_as_optional_in_the_recover_body():
    body = build_openapi()["components"]["schemas"]["RecoverRequest"]
    assert set(body["properties"]) == {"services", "force"}
    assert not body.get("required")
    assert body["additionalProperties"] is False


def test_it_documents_the_permission_and_the_429_of_token_endpoints():
    paths = build_openapi()["paths"]
    assert "recovery.run_recovery" in paths["/health/recover"]["post"]["responses"]["403"]["description"]
    for path, item in paths.items():
        for operation in item.values():
            if {"bearerAuth": []} in operation.get("security", []):
                limited = operation["responses"].get("429")
                assert limited is not None, path
                assert limited["headers"]["Retry-After"]["required"] is True


def test_it_documents_the_spool_in_the_status_database():
    database = build_openapi()["components"]["schemas"]["Database"]
    spool = database["properties"]["spool"]
    assert set(spool["properties"]) == {"bytes", "records", "dropped"}
