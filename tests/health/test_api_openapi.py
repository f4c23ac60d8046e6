from __future__ import annotations

import pytest
import requests
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, given, settings

from health.models import Incident
from health.openapi import build_openapi
from recovery.models import RecoveryAttempt
from tests.health.api_support import make_service, staff_token

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
        "/health/uptime",
        "/health/openapi.json",
        "/metrics",
    }


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
