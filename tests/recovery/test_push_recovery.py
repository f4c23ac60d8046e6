"""A late heartbeat is repaired like any service, and the repair is verified by the job's own ping.

Real parts: the portal answers pings on a live server; the recovery `command` is a real process that
calls that URL, as a job's wrapper would.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from dispatch import rounds
from health.models import Incident, Ping, Service
from recovery.models import RecoveryAttempt

pytestmark = pytest.mark.django_db(transaction=True)

PING = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5).read()"


def late_job(make_service, **settings) -> Service:
    service = make_service("backup", kind="push", settings={"period": 60, "grace": 1, **settings})
    Service.objects.filter(pk=service.pk).update(created_at=timezone.now() - timedelta(hours=1))  # overdue
    return Service.objects.get(pk=service.pk)


def test_it_opens_an_incident_for_a_late_job_and_a_command_that_pings_repairs_it_verified(
    live_server, make_service, add_action
):
    service = late_job(make_service, verify_timeout=10)
    add_action(
        service, "command", {"argv": [sys.executable, "-c", PING, f"{live_server.url}/ping/{service.ping_uuid}"]}
    )

    result = rounds.run([service])

    attempt = RecoveryAttempt.objects.get(service=service)
    assert (attempt.outcome, attempt.verified) == ("succeeded", True), attempt.detail
    assert Ping.objects.filter(
        service_id=service.ping_uuid, kind="success", received_at__gte=attempt.started_at
    ).exists()
    incident = Incident.objects.get(service=service)  # the late job opened one; the verified ping resolved it
    assert incident.resolved_at is not None
    assert Service.objects.get(pk=service.pk).status == "up"
    assert [r.outcome for r in result.recovery] == ["succeeded"]


def test_it_fails_the_attempt_when_no_ping_comes_within_the_verify_timeout(make_service, add_action):
    service = late_job(make_service, verify_timeout=1)
    add_action(service, "command", {"argv": ["true"]})  # exits 0, but the job never reports in

    rounds.run([service])

    attempt = RecoveryAttempt.objects.get(service=service)
    assert attempt.outcome == "failed" and attempt.verified is False
    assert attempt.verify_detail.startswith("down: no ping received yet, expected by")
    assert Incident.objects.get(service=service).resolved_at is None
