"""A recovery attempt in flight when the portal's database goes away: its outcome is spooled and replayed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from core.spool import default_spool, replay_pending
from health.models import Event, Incident, ProbeResult, Service
from health.runner import run_round
from recovery.engine import recover_services
from recovery.models import RecoveryAttempt, RecoveryState
from tests.core.outage_support import Outage, quick_db_hardening
from tests.servers import HttpServer, Reply

pytestmark = pytest.mark.django_db(transaction=True)

Outcome = RecoveryAttempt.Outcome


@pytest.fixture(autouse=True)
def _private_spool(settings, tmp_path) -> Iterator[None]:
    with quick_db_hardening(settings, tmp_path / "var"):
        yield


def spooled() -> list[tuple[str, str]]:
    """(kind, model) of every record waiting in the spool, oldest first."""
    spool = default_spool()
    lines = [line for path in [*spool.batches(), spool.path] if path.exists() for line in path.read_text().splitlines()]
    return [(r["kind"], r["payload"].get("model", "")) for r in map(json.loads, lines)]


def hook_target(server: HttpServer, outage: Outage, *, fixes: bool) -> None:
    """/health is 503 until the /fix hook ran (if it `fixes`); the hook takes the database away as it answers."""
    fixed: list[bool] = []

    def handle(request: dict) -> Reply:
        if request["path"] == "/fix":
            outage.start()
            if fixes:
                fixed.append(True)
            return Reply(200, "restarted")
        return Reply(200, "ok") if fixed else Reply(503, "broken")

    server.handler = handle


def test_it_replays_an_attempt_whose_final_writes_hit_an_outage_with_its_outcome(
    http_server, make_service, add_action, outage
):
    hook_target(http_server, outage, fixes=True)
    svc = make_service(url=http_server.url + "/health")
    add_action(svc, "http", {"url": http_server.url + "/fix"})
    run_round([svc])

    (result,) = recover_services(["web"], trigger="manual", via="test")

    assert outage.started.is_set()
    assert result["success"] is True and result["outcome"] == Outcome.SUCCEEDED
    assert spooled() == [
        ("probe_round", ""),  # the verifying re-probe
        ("update", "recovery.RecoveryAttempt"),  # the outcome
        ("update", "recovery.RecoveryState"),  # the release and counters
        ("create", "health.Event"),  # recovery_succeeded
    ]
    outage.end()
    assert replay_pending() > 0
    attempt = RecoveryAttempt.objects.get(service=svc)  # one row, not one per write
    assert attempt.pk == result["attempt"]
    assert attempt.outcome == Outcome.SUCCEEDED and attempt.action_ok is True and attempt.verified is True
    assert attempt.finished_at is not None and attempt.verify_detail.startswith("up")
    assert "HTTP 200" in attempt.action_detail
    state = RecoveryState.objects.get(service=svc)
    assert state.running_since is None and state.claim_token == "" and state.consecutive_failures == 0
    assert Event.objects.filter(kind=Event.Kind.RECOVERY_SUCCEEDED, service=svc).count() == 1
    assert list(ProbeResult.objects.filter(service=svc).order_by("pk").values_list("status", flat=True)) == [
        "down",
        "up",  # the verifying re-probe, spooled by the runner
    ]
    assert Service.objects.get(pk=svc.pk).status == "up"
    assert replay_pending() == 0  # exactly once


def test_it_replays_the_failure_and_escalation_of_an_attempt_cut_off_by_an_outage(
    http_server, make_service, add_action, outage
):
    hook_target(http_server, outage, fixes=False)
    svc = make_service(url=http_server.url + "/health")
    add_action(svc, "http", {"url": http_server.url + "/fix"}, escalate_after=1)
    run_round([svc])
    assert Incident.objects.filter(service=svc, resolved_at__isnull=True).count() == 1

    (result,) = recover_services(["web"], trigger="manual", via="test")

    assert result["success"] is False and result["outcome"] == Outcome.FAILED
    assert [kind for kind, _ in spooled()][-2:] == ["create", "recovery_escalation"]
    outage.end()
    replay_pending()
    attempt = RecoveryAttempt.objects.get(service=svc)
    assert attempt.outcome == Outcome.FAILED and attempt.action_ok is True and attempt.verified is False
    state = RecoveryState.objects.get(service=svc)
    assert state.consecutive_failures == 1 and state.escalated_at is not None and state.running_since is None
    assert Incident.objects.get(service=svc).severity == Incident.Severity.ESCALATED
    kinds = list(Event.objects.filter(service=svc).order_by("created_at", "pk").values_list("kind", flat=True))
    assert kinds[-2:] == [Event.Kind.RECOVERY_FAILED, Event.Kind.RECOVERY_ESCALATED]
    escalated = Event.objects.get(kind=Event.Kind.RECOVERY_ESCALATED)
    assert escalated.data["attempt"] == attempt.pk and escalated.data["failures"] == 1
    assert not RecoveryAttempt.objects.filter(outcome=Outcome.IN_PROGRESS).exists()
