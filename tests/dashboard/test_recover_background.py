"""The dashboard's manual recovery runs in the background (dispatch.manual): Confirm lands back at once with
"recovery started", the service page's live partial shows it running and then its verified outcome.

Real parts: a `command` action that sleeps 2 s in a real subprocess, a service probed over TCP on a loopback
server the test controls, the engine's claim, a daemon thread of this process (no cluster runs here), and the
ORM broker's queue when a resident loop beats. Transactional: the thread reads what the test committed.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ

from dispatch.manual import TASK, run_manual
from dispatch.scheduler import beat
from health.models import Service
from recovery.models import RecoveryAction, RecoveryAttempt, RecoveryState
from tests.dashboard.dashboard_fixtures import make_service, staff_client, threads_may_read
from tests.factories import grant
from tests.servers import TcpServer, wait_for

__all__ = ["staff_client", "threads_may_read"]

SLEEP_ARGV = ["python3", "-c", "import time; time.sleep(2)"]
# Longer than the action plus its verification: the outcome is polled for, never assumed.
OUTCOME_WAIT_S = 15.0


@pytest.fixture
def web(threads_may_read, tcp_server: TcpServer) -> Service:
    """A down service whose probe (TCP to a loopback listener that is up again) verifies a repair."""
    svc = make_service("web", status="down", settings={"host": "127.0.0.1", "port": tcp_server.port})
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": SLEEP_ARGV}, verify_delay=0)
    return svc


def attempts(svc: Service, **filters) -> list[RecoveryAttempt]:
    return list(RecoveryAttempt.objects.filter(service=svc, **filters).order_by("pk"))


def finished(svc: Service) -> bool:
    ran = attempts(svc, outcome__in=["succeeded", "failed", "abandoned"])
    return bool(ran) and not RecoveryState.objects.filter(service=svc, running_since__isnull=False).exists()


def live(client: Client, name: str = "web") -> str:
    response = client.get(f"/services/{name}/live/")
    assert response.status_code == 200
    return response.content.decode()


def wait_until_finished(svc: Service) -> None:
    assert wait_for(lambda: finished(svc), timeout=OUTCOME_WAIT_S), attempts(svc)


@pytest.mark.slow("a real 2 s recovery action, polled until verified")
def test_it_answers_at_once_then_shows_the_running_recovery_and_its_verified_outcome(staff_client, web):
    response = staff_client.post("/services/web/recover/", {"next": "/services/web/"})
    assert response.status_code == 302
    assert response["Location"] == "/services/web/"
    # The answer came before the action could finish: the attempt is still running after it.
    assert wait_for(lambda: bool(attempts(web, outcome="in_progress")), timeout=5.0)
    assert not attempts(web, outcome="succeeded")
    page = staff_client.get("/services/web/").content.decode()
    assert "Recovery of web started" in page
    partial = live(staff_client)
    assert "recovery running" in partial and "since" in partial
    assert "<code>command</code>, manual by ops" in partial

    wait_until_finished(web)
    (attempt,) = attempts(web)
    assert (attempt.outcome, attempt.verified, attempt.trigger) == ("succeeded", True, "manual")
    assert (attempt.requested_by, attempt.requested_via) == (staff_client.user, "dashboard")
    partial = live(staff_client)
    assert "recovery running" not in partial
    assert "Last recovery" in partial
    assert 'class="badge out-succeeded">succeeded<' in partial
    assert "verified healthy" in partial
    assert attempt.detail in partial


@pytest.mark.slow("a real 2 s recovery action, polled until verified")
def test_it_says_already_running_to_a_second_confirm_and_starts_nothing(staff_client, web):
    staff_client.post("/services/web/recover/")
    assert wait_for(lambda: bool(attempts(web, outcome="in_progress")), timeout=5.0)
    again = staff_client.post("/services/web/recover/", {"force": "on"}, follow=True).content.decode()
    assert "already running" in again and "Nothing started" in again
    wait_until_finished(web)
    ran = attempts(web, outcome__in=["succeeded", "failed"])
    assert len(ran) == 1
    # The refused press is in the history as the engine records it, and it is not shown as the outcome.
    assert [a.outcome for a in attempts(web, outcome__startswith="skipped_")] == ["skipped_busy"]
    assert 'class="badge out-succeeded">succeeded<' in live(staff_client)


@pytest.mark.slow("a real recovery action and a re-probe, polled until verified")
def test_it_shows_a_failed_verification_as_the_outcome(staff_client, threads_may_read):
    # Nothing listens on port 9: the action runs, the re-probe finds the service still down.
    svc = make_service("db", status="down")
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"]}, verify_delay=0)
    assert staff_client.post("/services/db/recover/").status_code == 302
    wait_until_finished(svc)
    partial = live(staff_client, "db")
    assert 'class="badge out-failed">failed<' in partial
    assert "verification failed" in partial
    assert "not fixed" in partial


@pytest.mark.slow("a real 2 s recovery action once forced")
def test_it_answers_cooldown_at_once_and_force_overrides_it(staff_client, web):
    RecoveryState.objects.create(service=web, next_allowed_at="2999-01-01T00:00:00Z")
    body = staff_client.post("/services/web/recover/", follow=True).content.decode()
    assert "not started" in body and "cooldown" in body and "Force overrides it" in body
    assert [a.outcome for a in attempts(web)] == ["skipped_cooldown"]
    assert "in cooldown" in staff_client.get("/services/web/recover/").content.decode()
    body = staff_client.post("/services/web/recover/", {"force": "on"}, follow=True).content.decode()
    assert "Recovery of web started" in body
    wait_until_finished(web)
    assert attempts(web)[-1].outcome == "succeeded"


@pytest.mark.slow("runs the queued task's 2 s action")
def test_it_enqueues_a_task_when_a_cluster_is_alive(staff_client, web):
    beat(owner="resident@test-cluster")  # a resident loop of dispatch's qcluster beats
    RecoveryAction.objects.filter(service=web).update(timeout=600)  # longer than the cluster's task timeout
    body = staff_client.post("/services/web/recover/", follow=True).content.decode()
    assert "Recovery of web started" in body
    (queued,) = OrmQ.objects.all()
    assert queued.func() == TASK
    assert queued.task["args"] == ("web", staff_client.user.pk, False)
    assert queued.task["timeout"] >= 600 + 0 + 5  # the action's timeout, its verify delay, the probe's
    assert attempts(web) == []  # nothing ran in this process: the cluster runs it
    # What the cluster's worker then runs:
    assert run_manual(*queued.task["args"]).startswith("web: succeeded")
    assert attempts(web)[0].requested_by == staff_client.user


def test_it_offers_no_recovery_for_a_service_without_an_action(staff_client, db):
    grant(staff_client.user, "recovery.add_recoveryaction")  # may configure: the page links the admin
    make_service("bare", status="down", last_detail="connection refused", last_error="connection refused")
    svc = make_service("off", status="down")
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"]}, enabled=False)
    make_service("api", status="down")
    RecoveryAction.objects.create(service=Service.objects.get(name="api"), kind="command", settings={"argv": ["true"]})
    overview = staff_client.get("/").content.decode()
    assert "/services/api/recover/" in overview
    for name in ("bare", "off"):
        assert f"/services/{name}/recover/" not in overview
        assert f"/services/{name}/recover/" not in staff_client.get(f"/services/{name}/").content.decode()
        confirm = staff_client.get(f"/services/{name}/recover/").content.decode()
        assert "No recovery action configured" in confirm
        assert "/admin/recovery/recoveryaction/add/" in confirm  # the operator may add one
        assert 'name="force"' not in confirm and "Confirm recovery" not in confirm and 'class="danger"' not in confirm
    assert "/services/api/recover/" in staff_client.get("/services/api/").content.decode()
    # A POST anyway runs nothing and says why.
    body = staff_client.post("/services/bare/recover/", follow=True).content.decode()
    assert "not started: no recovery action configured" in body
    assert [a.outcome for a in attempts(Service.objects.get(name="bare"))] == ["skipped_disabled"]


def test_it_links_the_admin_only_for_who_may_configure(db):
    make_service("bare", status="down")
    user = grant(get_user_model().objects.create_user("runner", is_staff=True), "recovery.run_recovery")
    client = Client()
    client.force_login(user)
    confirm = client.get("/services/bare/recover/").content.decode()
    assert "No recovery action configured" in confirm
    assert "/admin/" not in confirm.split("No recovery action configured", 1)[1].split("</p>", 1)[0]


def test_it_shows_the_current_state_with_its_own_detail(staff_client, db):
    # Up now, after an error an earlier probe left: the page says up with the detail of the probe that said so.
    svc = make_service(
        "worker",
        status="up",
        last_detail="3 running (need 1)",
        last_error="0 running (need 1)",
        last_checked_at="2026-12-01T10:00:00Z",
    )
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"]})
    body = staff_client.get("/services/worker/recover/").content.decode()
    now = body.split('<p class="now">', 1)[1].split("</p>", 1)[0]
    assert "up" in now
    assert "3 running (need 1)" in now
    assert "0 running" not in body
    assert 'datetime="2026-12-01T10:00:00+00:00"' in now
    assert "Confirm recovery" in body


@pytest.mark.django_db
def test_it_shows_a_claim_whose_attempt_row_is_not_the_running_one_without_failing(staff_client: Client):
    """The claim is written before its attempt row: for an instant the latest attempt is a finished one (or
    none). The page says "running since" the claim's time instead of failing on the missing attempt."""
    svc = make_service("api", kind="tcp", settings={"host": "127.0.0.1", "port": 9})
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"]})
    RecoveryAttempt.objects.create(service=svc, trigger="manual", outcome="succeeded", action_kind="command")
    RecoveryState.objects.create(service=svc, running_since=timezone.now())
    for path in ("/services/api/", "/services/api/live/"):
        response = staff_client.get(path)
        assert response.status_code == 200, path
        assert "recovery running" in response.content.decode(), path
