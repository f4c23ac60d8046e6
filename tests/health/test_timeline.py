"""health.timeline: an incident's events in order, read from the rows that record them (sources registered by
health, notify and recovery), in a bounded number of queries, secrets masked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from health import incidents, timeline
from health.models import Event, Incident, IncidentUpdate, Service
from health.runner import run_round
from notify import outbox
from notify.models import Channel, Delivery
from notify.timeline import deliveries_source
from recovery.models import RecoveryAttempt
from recovery.timeline import attempts_source
from tests.factories import ServiceFactory, make_user
from tests.health import timeline_support as world

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings):
    world.set_up(settings)


def kinds(entries) -> list[str]:
    return [e.kind for e in entries]


def first(entries, kind: str, **data) -> int:
    """The position of the first entry of `kind` whose data has these values."""
    for i, e in enumerate(entries):
        if e.kind == kind and all(e.data.get(k) == v for k, v in data.items()):
            return i
    raise AssertionError(f"no {kind} entry with {data}: {[(e.kind, e.title) for e in entries]}")


def test_it_registers_the_sources_of_health_notify_and_recovery_once():
    assert timeline._sources[0] == timeline.health_source
    assert sorted(timeline._sources[1:], key=repr) == sorted([deliveries_source, attempts_source], key=repr)
    timeline.register(deliveries_source)
    assert timeline._sources.count(deliveries_source) == 1


@pytest.mark.slow("a real outage: four probe rounds, two outbox passes and a repair command")
def test_it_tells_a_real_outage_in_order(make_http_server, tmp_path):
    outage = world.outage(make_http_server(), make_http_server(), tmp_path)
    entries = timeline.build(world.load(outage.incident))

    assert entries == sorted(entries, key=lambda e: (e.kind == timeline.POSTMORTEM, e.at))
    soft = first(entries, "state_change", newStatus="down", newType="soft")
    hard = first(entries, "state_change", newStatus="down", newType="hard")
    opened = first(entries, "opened")
    notified = first(entries, "notification", eventKind="incident_opened", channel="ops")
    acked = first(entries, "acknowledged")
    update = first(entries, "update")
    recovery = first(entries, "recovery")
    up = first(entries, "state_change", newStatus="up")
    resolved = first(entries, "resolved")
    assert soft < hard < opened < notified < acked < update < recovery < up < resolved

    assert entries[soft].title == "First failure (SOFT down)"
    assert world.READY in entries[soft].detail  # the probe's own words: what the body lacked
    assert entries[hard].title == "HARD down"
    assert entries[opened].title == "Incident opened (critical)"
    assert entries[notified].title == "Notified ops: web is down"
    assert entries[notified].data["status"] == "sent" and entries[notified].data["sentAt"]
    failed = entries[first(entries, "notification", eventKind="incident_opened", channel="pager")]
    assert failed.title == "Not delivered to pager after 1 attempts: web is down"
    assert failed.data["status"] == "failed" and failed.detail  # why: the error of its last try
    assert entries[acked].title == "Acknowledged by alice"
    assert entries[update].title == "Update: identified"
    assert entries[update].detail == world.UPDATE_MESSAGE and entries[update].data["by"] == "alice"
    attempt = entries[recovery]
    assert attempt.title == "Recovery by command: fixed (verified)"
    assert attempt.data["attempt"] == outage.attempt.pk
    assert attempt.data["verified"] is True and attempt.data["verifyDetail"].startswith("up")
    assert attempt.data["trigger"] == "manual" and attempt.data["by"] == "alice"
    assert "evidence" not in attempt.data  # none captured: nothing shown
    # After the end, still this incident's: the resolution's and the repair's notifications.
    assert first(entries, "notification", eventKind="incident_resolved", channel="ops") > resolved
    assert first(entries, "notification", eventKind="recovery_succeeded", channel="ops") > recovery
    assert first(entries, "notification", eventKind="incident_acknowledged", channel="ops") > acked
    assert entries[-1].kind == "notification"  # no postmortem yet


@pytest.mark.slow("a real outage: four probe rounds, two outbox passes and a repair command")
def test_it_masks_secrets_the_rows_hold_and_shows_evidence(make_http_server, tmp_path):
    evidence = {"processes": [{"pid": 4242, "cmdline": "backend --dsn postgres://app:hunter2@127.0.0.1/db"}]}
    outage = world.outage(make_http_server(), make_http_server(), tmp_path, evidence=evidence)
    assert "hunter2" in RecoveryAttempt.objects.get(pk=outage.attempt.pk).action_detail  # the row as stored
    entries = timeline.build(world.load(outage.incident))
    attempt = entries[first(entries, "recovery")]
    assert "<b>restarted</b>" in attempt.data["actionDetail"]
    assert "hunter2" not in repr(entries)
    assert attempt.data["evidence"]["processes"][0]["pid"] == 4242
    assert "postgres://••••••@127.0.0.1/db" in attempt.data["evidence"]["processes"][0]["cmdline"]


def test_it_says_why_a_delivery_was_held(http_server):
    """A child of a down parent: its opening goes nowhere, and the timeline says so."""
    Channel.objects.create(name="ops", url=f"json://127.0.0.1:{http_server.port}/hook")
    parent = ServiceFactory(name="db", failure_threshold=1)
    child = ServiceFactory(name="app", failure_threshold=1)
    child.depends_on.add(parent)
    run_round([parent])
    run_round([child])
    outbox.process_outbox()
    incident = Incident.objects.get(service=child)
    entries = timeline.build(world.load(incident))
    held = entries[first(entries, "notification", eventKind="incident_opened")]
    assert held.title == "Held for ops: app is down"
    assert held.detail == "held: parent db is down"
    assert held.data["status"] == "held"
    assert entries[first(entries, "opened")].data["parent"] == Incident.objects.get(service=parent).pk
    assert len(http_server.requests) == 1  # only the parent's opening was sent


def test_it_keeps_the_rows_of_the_services_other_incidents_out(tcp_server):
    """Two outages of one service through the runner: each timeline has its own changes, attempts and events."""
    service = ServiceFactory(name="web", failure_threshold=1)
    listening = {"host": "127.0.0.1", "port": tcp_server.port}

    def attempt(outcome: str) -> RecoveryAttempt:
        return RecoveryAttempt.objects.create(service=service, trigger="auto", outcome=outcome)

    def probe(settings: dict | None = None) -> None:
        if settings is not None:
            Service.objects.filter(pk=service.pk).update(settings=settings)
        service.refresh_from_db()
        run_round([service])

    probe()  # down: the first incident
    during_first = attempt("failed")
    Event.emit("recovery_failed", "web: first repair failed", service=service, attempt=during_first.pk)
    probe(listening)  # up: resolved
    between = attempt("skipped_disabled")
    probe({"host": "127.0.0.1", "port": 9})  # down again: the second incident
    during_second = attempt("succeeded")
    first_incident, second_incident = Incident.objects.filter(service=service).order_by("opened_at")
    other = ServiceFactory(name="other")
    RecoveryAttempt.objects.create(service=other, trigger="auto", outcome="failed", started_at=first_incident.opened_at)

    one = timeline.build(world.load(first_incident))
    two = timeline.build(world.load(second_incident))
    assert [e.data["attempt"] for e in one if e.kind == "recovery"] == [during_first.pk]
    assert [e.data["attempt"] for e in two if e.kind == "recovery"] == [during_second.pk]
    assert between.pk not in [e.data.get("attempt") for e in one + two]
    # No channel yet: the events wait in the outbox, and the timeline says so.
    assert kinds(one) == [
        "state_change",
        "opened",
        "notification",
        "recovery",
        "notification",
        "state_change",
        "resolved",
        "notification",
    ]
    assert one[2].title == "Queued for notification: web is down"
    assert [e.data["newStatus"] for e in one if e.kind == "state_change"] == ["down", "up"]
    assert [e.data["newStatus"] for e in two if e.kind == "state_change"] == ["down"]
    assert "web: first repair failed" in " ".join(e.title for e in one)
    assert "web: first repair failed" not in " ".join(e.title for e in two)


def test_it_tells_a_declared_incident_with_its_postmortem_last():
    alice = make_user("alice")
    service = ServiceFactory(name="payments")
    now = timezone.now()
    incident = incidents.declare(
        service,
        severity="critical",
        cause="the card processor is degraded",
        user=alice,
        message="Looking into it",
        now=now - timedelta(hours=2),
    )
    incidents.post_update(incident, status="monitoring", message="internal note", public=False, author=alice)
    incidents.close(incident, user=alice, now=now + timedelta(hours=1))
    incidents.set_postmortem(incident, "The processor's region failed over.")
    entries = [e for e in timeline.build(world.load(incident)) if e.kind != "notification"]
    assert kinds(entries) == ["opened", "update", "update", "resolved", "postmortem"]
    assert entries[0].title == "Incident opened by alice" and entries[0].data["declaredBy"] == "alice"
    assert entries[1].title == "Update: investigating" and entries[1].detail == "Looking into it"
    assert entries[2].title == "Update: monitoring (internal)" and entries[2].data["public"] is False
    assert entries[3].title == "Incident closed by alice" and entries[3].detail == "after 3 h 0 min"
    assert entries[4].detail == "The processor's region failed over."


def test_it_reads_each_source_once_however_many_rows(django_assert_max_num_queries):
    service = ServiceFactory(name="web", failure_threshold=2)
    run_round([service])
    run_round([service])
    incident = world.load(Incident.objects.get(service=service))
    channels = [Channel.objects.create(name=f"c{i}", url="json://127.0.0.1:9/") for i in range(3)]
    start = incident.opened_at
    RecoveryAttempt.objects.bulk_create(
        RecoveryAttempt(service=service, trigger="auto", outcome="failed", started_at=start + timedelta(seconds=i))
        for i in range(60)
    )
    events = Event.objects.bulk_create(
        Event(**Event.row("recovery_failed", f"failed {i}", service=service, at=start + timedelta(seconds=i)))
        for i in range(30)
    )
    Delivery.objects.bulk_create(Delivery(channel=c, event=e, status="failed") for c in channels for e in events)
    IncidentUpdate.objects.bulk_create(
        IncidentUpdate(incident=incident, status="investigating", message=str(i)) for i in range(20)
    )
    # The span, then health (changes, acknowledgements, updates), notify (events, deliveries), recovery.
    with django_assert_max_num_queries(7):
        entries = timeline.build(incident, now=start + timedelta(minutes=2))
    assert kinds(entries).count("recovery") == 60
    assert kinds(entries).count("notification") >= 90
    assert kinds(entries).count("update") == 20


def test_it_shows_an_open_incident_up_to_now():
    service = ServiceFactory(name="web", failure_threshold=1)
    run_round([service])
    incident = world.load(Incident.objects.get(service=service))
    later = timezone.now() + timedelta(minutes=5)
    RecoveryAttempt.objects.create(service=service, trigger="manual", outcome="skipped_cooldown", started_at=later)
    entries = timeline.build(incident, now=later + timedelta(seconds=1))
    assert kinds(entries)[:2] == ["state_change", "opened"]
    assert entries[0].title == "First failure: HARD down"  # threshold 1: the first failure is HARD
    assert entries[-1].title == "Recovery skipped (cooldown)"
    assert "resolved" not in kinds(entries)
    assert entries[1].as_dict()["at"] == incident.opened_at.isoformat()


def test_it_takes_follow_ups_only_while_an_attempt_could_still_report(tcp_server, settings):
    settings.RECOVERY_STALE_AFTER = 900
    service = ServiceFactory(name="web", failure_threshold=1)
    run_round([service])
    Service.objects.filter(pk=service.pk).update(settings={"host": "127.0.0.1", "port": tcp_server.port})
    service.refresh_from_db()
    run_round([service])  # up: resolved
    incident = world.load(Incident.objects.get(service=service))
    soon, late = incident.resolved_at + timedelta(seconds=5), incident.resolved_at + timedelta(hours=2)
    Event.emit("recovery_succeeded", "web recovered by command", service=service, at=soon)
    Event.emit("recovery_succeeded", "web recovered by hand, much later", service=service, at=late)
    titles = [e.title for e in timeline.build(incident, now=late + timedelta(minutes=1))]
    assert "Queued for notification: web recovered by command" in titles
    assert not [t for t in titles if "much later" in t]
