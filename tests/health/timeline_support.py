"""A real incident for the timeline tests (tests/health/test_timeline.py, tests/api/test_incident_detail.py,
tests/dashboard/test_incident_page.py): an HTTP target that fails SOFT then HARD through the runner, notified
through the outbox to a loopback `json://` receiver (and to a channel that cannot be reached), acknowledged,
updated, then repaired by a real `command` action whose verification re-probe resolves it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model

from health import incidents
from health.models import Incident, Service
from health.runner import run_round
from notify import outbox
from notify.models import Channel
from recovery.engine import recover_services
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.servers import HttpServer, Reply, free_port

PY = sys.executable
# The target's health answer, also what the probe requires: the failing probe's detail quotes it (HTML).
READY = "<em>ready</em>"
# The repair prints HTML and a credentialed URL: the page must escape the one and every face mask the other.
REPAIR_OUTPUT = "<b>restarted</b> postgres://app:hunter2@127.0.0.1/db"
UPDATE_MESSAGE = "Looking at <script>alert('x')</script> the backend"


@dataclass
class Outage:
    incident: Incident
    service: Service
    attempt: RecoveryAttempt
    hook: HttpServer


def repair_argv(flag: Path) -> list[str]:
    code = f"import pathlib, sys; pathlib.Path(sys.argv[1]).touch(); print({REPAIR_OUTPUT!r})"
    return [PY, "-c", code, str(flag)]


def set_up(settings: Any) -> None:
    settings.AUTO_RECOVERY_ENABLED = False  # the test recovers by hand, after the notification went out
    settings.NOTIFY_RETRY_SECONDS = 0
    settings.NOTIFY_MAX_ATTEMPTS = 1


def outage(target: HttpServer, hook: HttpServer, tmp_path: Path, *, evidence: dict | None = None) -> Outage:
    """SOFT, HARD, notified, acknowledged, an update, a repair (with `evidence` stored on its attempt, as the
    evidence capture does before a restart), resolved and notified again. Returns the resolved incident."""
    flag = tmp_path / "fixed"
    target.handler = lambda request: Reply(200, READY) if flag.exists() else Reply(200, "<h1>broken</h1>")
    Channel.objects.create(name="ops", url=f"json://127.0.0.1:{hook.port}/hook")
    Channel.objects.create(name="pager", url=f"json://127.0.0.1:{free_port()}/nobody-listens")
    service = Service.objects.create(
        name="web",
        kind="http",
        settings={"url": target.url + "/health", "body_contains": READY},
        timeout=2.0,
        failure_threshold=2,
    )
    RecoveryAction.objects.create(
        service=service, kind="command", settings={"argv": repair_argv(flag)}, verify_delay=0, timeout=10
    )
    run_round([service])  # SOFT
    run_round([service])  # HARD: the incident opens
    outbox.process_outbox()  # incident_opened: sent to ops, failed to pager
    incident = Incident.objects.get(service=service)
    user = get_user_model().objects.create_user("alice", password=None, is_staff=True)
    assert incident.acknowledge(user)
    incidents.post_update(incident, status="identified", message=UPDATE_MESSAGE, author=user)
    (result,) = recover_services(["web"], trigger="manual", user=user, via="test")  # re-probed: resolved
    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    if evidence is not None:
        RecoveryAttempt.objects.filter(pk=attempt.pk).update(evidence=evidence)
    outbox.process_outbox()  # acknowledged, resolved, recovery_succeeded
    incident.refresh_from_db()
    assert incident.resolved_at is not None, "the repair's re-probe resolves the incident"
    return Outage(incident=incident, service=service, attempt=attempt, hook=hook)


def load(incident: Incident) -> Incident:
    """The incident as the faces load it."""
    return Incident.objects.select_related("service", "acknowledged_by", "declared_by").get(pk=incident.pk)
