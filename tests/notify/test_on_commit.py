"""Deliver on commit (notify.realtime): a real loopback webhook hears "down" seconds after the real runner's
round commits, without the minute schedule; exactly once beside a concurrent schedule; never for a rollback."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time

import pytest
from django.db import OperationalError, transaction
from django_q.models import OrmQ

from core.liveness import LOOP_PREFIX, beat_rows
from dispatch import tasks
from health.models import Event, Incident
from health.runner import run_round
from notify import outbox, realtime
from notify.models import Channel, Delivery
from tests.factories import ServiceFactory
from tests.servers import Reply

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit fires only on a real commit
SECRET = "hook-s3cr3t-token-0815"


@pytest.fixture(autouse=True)
def _settings(settings, monkeypatch):
    settings.AUTO_RECOVERY_ENABLED = False
    settings.NOTIFY_RETRY_SECONDS = 0
    settings.NOTIFY_MAX_ATTEMPTS = 3
    monkeypatch.setenv("HOOK_TOKEN", SECRET)
    monkeypatch.setattr(tasks, "_alive_until", 0.0)  # no cluster seen alive by an earlier test
    yield
    # No pass of this test's may run into the next test's database.
    assert realtime.sender.wait_idle(15)


def hook_channel(server, name: str = "ops") -> Channel:
    return Channel.objects.create(name=name, url=f"json://127.0.0.1:{server.port}/hook/${{HOOK_TOKEN}}")


def hook_messages(server) -> list[dict]:
    return [json.loads(r["body"]) for r in server.requests if r["path"].startswith("/hook/")]


def wait_for(predicate, timeout: float) -> float:
    """Seconds until predicate() held; fails the test past the timeout."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


def failing_service(server, name: str = "web"):
    server.routes["/svc"] = Reply(status=500)
    return ServiceFactory(name=name, kind="http", settings={"url": server.url + "/svc"}, failure_threshold=1)


@pytest.mark.slow("waits for a real webhook delivery after a real probe round")
def test_it_delivers_down_to_a_webhook_within_seconds_of_the_round(http_server, caplog):
    hook_channel(http_server)
    service = failing_service(http_server)
    caplog.set_level(logging.INFO, logger="opsportal.health")
    run_round([service])  # the real runner: probe, record, incident opened, outbox row, commit
    committed = time.monotonic()
    assert Incident.objects.filter(service=service, resolved_at__isnull=True).exists()
    took = wait_for(lambda: hook_messages(http_server), timeout=5)  # the schedule would take up to 60 s
    assert took < 5
    assert realtime.sender.wait_idle(5)
    [message] = hook_messages(http_server)
    assert message["title"] == "web is down"
    assert message["type"] == "failure"
    assert Delivery.objects.get().status == "sent"
    assert time.monotonic() - committed < 5
    # One INFO line per success: kind, channel, subject, milliseconds; never the URL's token.
    sent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Notification incident_opened sent")]
    assert len(sent) == 1
    assert "to ops: web (" in sent[0] and sent[0].endswith(" ms)")
    assert SECRET not in caplog.text
    assert "127.0.0.1" not in sent[0]


@pytest.mark.slow("runs the minute schedule's pass in threads while the on-commit send is under way")
def test_it_sends_exactly_once_while_the_schedule_runs_at_the_same_time(http_server):
    http_server.routes["/hook/" + SECRET] = Reply(delay=0.3)  # a slow webhook: the passes overlap
    hook_channel(http_server)
    hook_channel(http_server, "pager")
    services = [failing_service(http_server, f"web-{i}") for i in range(3)]
    stop = threading.Event()
    passes: list[str] = []

    def schedule() -> None:  # the `opsportal-notify` pass, as often as it can, beside the on-commit sender
        from django.db import connection

        while not stop.is_set():
            # SQLite: "database is locked" under the writers; the next pass goes on.
            with contextlib.suppress(OperationalError):
                passes.append(outbox.process_outbox())
        connection.close()

    threads = [threading.Thread(target=schedule) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        run_round(services)
        wait_for(lambda: len(hook_messages(http_server)) >= 6, timeout=10)
        time.sleep(1.0)  # any duplicate would arrive by now
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert realtime.sender.wait_idle(10)
    assert passes  # the schedule did run at the same time
    titles = sorted(m["title"] for m in hook_messages(http_server))
    assert titles == sorted([f"web-{i} is down" for i in range(3)] * 2)  # each (channel, event) exactly once
    assert Delivery.objects.count() == 6
    assert set(Delivery.objects.values_list("status", "attempts")) == {("sent", 1)}


@pytest.mark.slow("waits out the retries of a webhook that fails")
def test_it_does_not_break_the_round_when_the_send_fails(http_server):
    http_server.routes["/hook/" + SECRET] = Reply(status=500, body="boom")
    hook_channel(http_server)
    service = failing_service(http_server)
    result = run_round([service])  # returns normally: the send is out of the round
    assert result is not None
    service.refresh_from_db()
    assert service.status == "down"
    assert Event.objects.filter(kind="incident_opened", service=service).exists()
    wait_for(lambda: Delivery.objects.filter(attempts__gte=1).exists(), timeout=5)
    assert realtime.sender.wait_idle(10)
    delivery = Delivery.objects.get()
    assert delivery.status in ("pending", "failed")  # left to the schedule's retries, or given up
    assert "500" in delivery.error
    assert SECRET not in delivery.error
    # The portal goes on: the next round's events still go out on commit once the webhook answers.
    http_server.routes["/hook/" + SECRET] = Reply()
    http_server.routes["/svc"] = Reply()
    service.refresh_from_db()
    run_round([service])
    wait_for(lambda: any(m["title"] == "web is up again" for m in hook_messages(http_server)), timeout=5)


@pytest.mark.slow("waits to see that nothing arrives")
def test_it_sends_nothing_for_an_event_rolled_back(http_server):
    hook_channel(http_server)
    with pytest.raises(RuntimeError), transaction.atomic():
        Event.emit(Event.Kind.BREAKER_OPENED, "database circuit breaker opened", subject="database")
        raise RuntimeError("the writer's transaction fails")
    time.sleep(1.5)
    assert realtime.sender.wait_idle(5)
    assert hook_messages(http_server) == []
    assert not Event.objects.exists()
    # The same row committed is sent: the hook fires on commit, not on write.
    with transaction.atomic():
        Event.emit(Event.Kind.BREAKER_OPENED, "database circuit breaker opened", subject="database")
        time.sleep(0.5)
        assert hook_messages(http_server) == []  # not before the commit
    wait_for(lambda: hook_messages(http_server), timeout=5)


def test_it_sends_nothing_when_no_channel_wants_the_event(http_server):
    channel = hook_channel(http_server)
    channel.events = ["incident_resolved"]
    channel.save()
    Event.emit(Event.Kind.TUNNEL_RESTARTED, "tunnel main restarted", subject="main")
    assert realtime.sender.wait_idle(5)
    assert hook_messages(http_server) == []
    assert Event.objects.get().processed_at is None  # left for the schedule: no pass was kicked


def test_it_queues_the_notify_task_when_a_cluster_is_alive(http_server):
    hook_channel(http_server)
    beat_rows((LOOP_PREFIX + "resident@test-cluster",))  # a live qcluster's resident loop
    passes = realtime.sender.passes
    Event.emit(Event.Kind.BREAKER_OPENED, "database circuit breaker opened", subject="database")
    queued = [task for task in OrmQ.objects.all() if task.func() == "dispatch.tasks.notify"]
    assert len(queued) == 1
    assert realtime.sender.passes == passes  # the cluster sends it, not this process
    assert hook_messages(http_server) == []


def test_it_sends_in_process_when_the_broker_fails(http_server, monkeypatch):
    hook_channel(http_server)
    beat_rows((LOOP_PREFIX + "resident@test-cluster",))

    def broken(*args, **kwargs):
        raise ConnectionError("broker away")

    monkeypatch.setattr(tasks, "async_task", broken)
    Event.emit(Event.Kind.BREAKER_OPENED, "database circuit breaker opened", subject="database")
    wait_for(lambda: hook_messages(http_server), timeout=5)


def test_it_leaves_the_admins_test_notification_to_send_test(http_server):
    channel = hook_channel(http_server)
    passes = realtime.sender.passes
    delivery = outbox.send_test(channel, user="admin")  # sends at once itself: no second sender may race it
    assert realtime.sender.wait_idle(5)
    assert realtime.sender.passes == passes  # no pass was kicked to fan it out beside send_test
    assert delivery.status == "sent"
    assert Delivery.objects.count() == 1
    assert [m["title"] for m in hook_messages(http_server)] == ["Test notification from opsportal to ops"]
