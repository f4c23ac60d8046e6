"""Dependencies: a child of a down parent gets its incident linked to the parent's, its notifications are
held, and automatic recovery starts with the parent."""

from __future__ import annotations

import json
import sys

import pytest

from dispatch import rounds
from health.models import Incident, Service
from health.probes.base import DOWN, UP, ProbeOutcome
from health.runner import RoundResult, record
from notify import outbox as notify
from notify.models import Channel, Delivery
from recovery.engine import auto_recover
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.factories import ServiceFactory
from tests.servers import Reply

pytestmark = pytest.mark.django_db


def hook(server) -> list[dict]:
    return [json.loads(r["body"]) for r in server.requests if r["path"] == "/hook"]


@pytest.fixture
def family(http_server, settings):
    settings.AUTO_RECOVERY_ENABLED = False
    Channel.objects.create(name="ops", url=f"json://127.0.0.1:{http_server.port}/hook")
    backend = ServiceFactory(
        name="backend", kind="http", settings={"url": http_server.url + "/backend"}, failure_threshold=1
    )
    frontend = ServiceFactory(
        name="frontend", kind="http", settings={"url": http_server.url + "/frontend"}, failure_threshold=1
    )
    frontend.depends_on.set([backend])
    return backend, frontend


def round_(http_server, backend: int, frontend: int) -> None:
    http_server.routes["/backend"] = Reply(status=backend)
    http_server.routes["/frontend"] = Reply(status=frontend)
    rounds.run(list(Service.objects.order_by("name")), recover=False)
    notify.process_outbox()


def test_it_links_the_childs_incident_to_the_parents_and_holds_its_notifications(http_server, family):
    backend, frontend = family
    round_(http_server, 500, 500)  # both down in the same round
    parent = Incident.objects.get(service=backend)
    child = Incident.objects.get(service=frontend)
    assert child.parent_id == parent.pk
    assert parent.parent_id is None
    round_(http_server, 200, 200)
    assert [m["title"] for m in hook(http_server)] == ["backend is down", "backend is up again"]
    held = Delivery.objects.filter(event__service=frontend)
    assert {d.event.kind for d in held} == {"incident_opened", "incident_resolved"}
    assert {d.status for d in held} == {"held"}
    assert held.get(event__kind="incident_opened").error == "held: parent backend is down"


def test_it_alerts_for_a_child_that_fails_on_its_own(http_server, family):
    backend, frontend = family
    round_(http_server, 200, 500)
    assert Incident.objects.get(service=frontend).parent is None
    assert [m["title"] for m in hook(http_server)] == ["frontend is down"]


def test_it_links_a_child_that_fails_after_its_parent(http_server, family):
    backend, frontend = family
    round_(http_server, 500, 200)
    round_(http_server, 500, 500)
    assert Incident.objects.get(service=frontend).parent == Incident.objects.get(service=backend)
    assert [m["title"] for m in hook(http_server)] == ["backend is down"]


def test_it_recovers_the_parent_first_and_skips_the_child_with_a_reason(tmp_path, settings):
    settings.AUTO_RECOVERY_ENABLED = True
    backend = ServiceFactory(name="backend", failure_threshold=1)
    frontend = ServiceFactory(name="frontend", failure_threshold=1)
    frontend.depends_on.set([backend])
    markers = {}
    for service in (frontend, backend):
        markers[service.name] = tmp_path / service.name
        argv = [sys.executable, "-c", f"open({str(markers[service.name])!r}, 'w').close()"]
        RecoveryAction.objects.create(service=service, kind="command", settings={"argv": argv}, verify_delay=0)
    services = [frontend, backend]  # the child first: the engine must reorder
    outcomes = {s.name: ProbeOutcome(DOWN, 1.0, "connection refused") for s in services}
    transitions = record(services, outcomes, backend.created_at)
    results = auto_recover(RoundResult(services, outcomes, transitions, "down", backend.created_at, 0.0))
    assert [r["service"] for r in results] == ["backend", "frontend"]
    assert results[1]["skipped"] is True
    assert "waiting for backend" in results[1]["reason"]
    assert markers["backend"].exists()
    assert not markers["frontend"].exists()
    attempt = RecoveryAttempt.objects.get(service=frontend)
    assert attempt.outcome == "skipped_disabled"
    assert attempt.detail.startswith("waiting for backend")


def test_it_recovers_a_child_whose_parent_is_up(tmp_path, settings):
    settings.AUTO_RECOVERY_ENABLED = True
    backend = ServiceFactory(name="backend")
    frontend = ServiceFactory(name="frontend", failure_threshold=1)
    frontend.depends_on.set([backend])
    marker = tmp_path / "frontend"
    argv = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    RecoveryAction.objects.create(service=frontend, kind="command", settings={"argv": argv}, verify_delay=0)
    services = [backend, frontend]
    outcomes = {"backend": ProbeOutcome(UP, 1.0, "ok"), "frontend": ProbeOutcome(DOWN, 1.0, "refused")}
    transitions = record(services, outcomes, frontend.created_at)
    (result,) = auto_recover(RoundResult(services, outcomes, transitions, "degraded", frontend.created_at, 0.0))
    assert result["service"] == "frontend" and not result["skipped"]
    assert marker.exists()
