"""health.incidents: updates, declared incidents, postmortems; and the runner beside a declared incident."""

from __future__ import annotations

import json

import pytest
from django.db import connection, connections
from django.utils import timezone

from health import incidents
from health.incidents import MESSAGE_MAX, IncidentError
from health.models import Event, Incident, IncidentUpdate
from health.runner import run_round
from notify import outbox
from notify.models import Channel
from tests.conftest import requires_postgres
from tests.factories import make_service, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_recovery(settings):
    settings.AUTO_RECOVERY_ENABLED = False


@pytest.fixture
def ops():
    return make_user("ops")


def declared(service, user, **kw) -> Incident:
    return incidents.declare(
        service, severity=kw.pop("severity", "warning"), cause="payments degraded", user=user, **kw
    )


def events(kind: str) -> list[Event]:
    return list(Event.objects.filter(kind=kind).order_by("pk"))


def test_it_records_an_update_and_emits_an_event_only_when_public(ops):
    incident = Incident.objects.create(service=make_service("web"), cause="refused")
    public = incidents.post_update(incident, status="investigating", message="Looking into it", author=ops)
    internal = incidents.post_update(incident, status="identified", message="It's the disk", public=False, author=ops)
    assert list(incident.updates.values_list("status", "public")) == [("investigating", True), ("identified", False)]
    (event,) = events(Event.Kind.INCIDENT_UPDATE)
    assert event.body == "Looking into it"
    assert event.data == {
        "incident": incident.pk,
        "update": public.pk,
        "status": "investigating",
        "author": "ops",
        "held": "",
    }
    assert internal.pk != public.pk


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": "fixed", "message": "x"}, "status"),
        ({"status": "monitoring", "message": "   "}, "message"),
        ({"status": "monitoring", "message": "x" * (MESSAGE_MAX + 1)}, "message"),
        ({"status": "monitoring", "message": None}, "message"),
    ],
)
def test_it_refuses_a_bad_update_naming_the_field_and_writes_nothing(ops, fields, field):
    incident = Incident.objects.create(service=make_service("web"), cause="refused")
    with pytest.raises(IncidentError) as caught:
        incidents.post_update(incident, author=ops, **fields)
    assert caught.value.field == field
    assert not IncidentUpdate.objects.exists()
    assert not Event.objects.exists()


def test_it_resolves_a_declared_incident_with_a_resolved_update_but_not_a_probe_driven_one(ops):
    probe_driven = Incident.objects.create(service=make_service("db"), cause="refused")
    incidents.post_update(probe_driven, status="resolved", message="We think it's fine", author=ops)
    probe_driven.refresh_from_db()
    assert probe_driven.is_open  # the probe decides
    assert not events(Event.Kind.INCIDENT_RESOLVED)

    incident = declared(make_service("payments"), ops)
    incidents.post_update(incident, status="resolved", message="Provider recovered", author=ops)
    incident.refresh_from_db()
    assert not incident.is_open
    (resolved,) = events(Event.Kind.INCIDENT_RESOLVED)
    assert resolved.data["incident"] == incident.pk
    assert resolved.data["closedBy"] == "ops"


def test_it_declares_one_incident_per_service_and_refuses_a_second(ops):
    service = make_service("payments")
    incident = declared(service, ops, severity="critical", message="Card payments fail at the provider")
    assert (incident.declared_by, incident.severity, incident.cause) == (ops, "critical", "payments degraded")
    assert incident.updates.get().status == "investigating"
    (opened,) = events(Event.Kind.INCIDENT_OPENED)
    assert opened.data["incident"] == incident.pk
    assert opened.data["declaredBy"] == "ops"
    with pytest.raises(IncidentError) as caught:
        declared(service, ops)
    assert caught.value.field == "service"
    assert Incident.objects.filter(service=service).count() == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"severity": "escalated", "cause": "x"}, "severity"),
        ({"severity": "warning", "cause": ""}, "cause"),
        ({"severity": "warning", "cause": "x" * 501}, "cause"),
        ({"severity": "warning", "cause": "x", "user": None}, "user"),
    ],
)
def test_it_refuses_a_bad_declaration(ops, fields, field):
    fields.setdefault("user", ops)
    with pytest.raises(IncidentError) as caught:
        incidents.declare(make_service("payments"), **fields)
    assert caught.value.field == field
    assert not Incident.objects.exists()


def test_it_closes_a_declared_incident_once_and_never_a_probe_driven_one(ops):
    incident = declared(make_service("payments"), ops)
    assert incidents.close(incident, user=ops) is True
    assert incidents.close(Incident.objects.get(pk=incident.pk), user=ops) is False  # already closed
    assert len(events(Event.Kind.INCIDENT_RESOLVED)) == 1
    probe_driven = Incident.objects.create(service=make_service("db"), cause="refused")
    with pytest.raises(IncidentError):
        incidents.close(probe_driven, user=ops)
    probe_driven.refresh_from_db()
    assert probe_driven.is_open


def test_it_closes_with_a_message_as_the_resolved_update(ops):
    incident = declared(make_service("payments"), ops)
    assert incidents.close(incident, user=ops, message="All clear") is True
    incident.refresh_from_db()
    assert not incident.is_open
    assert list(incident.updates.values_list("status", "message")) == [("resolved", "All clear")]
    assert [e.kind for e in Event.objects.order_by("pk")] == ["incident_opened", "incident_update", "incident_resolved"]


def test_it_accepts_a_postmortem_only_after_resolution(ops):
    incident = declared(make_service("payments"), ops)
    with pytest.raises(IncidentError) as caught:
        incidents.set_postmortem(incident, "What happened")
    assert caught.value.field == "postmortem"
    assert Incident.objects.get(pk=incident.pk).postmortem == ""
    incidents.close(incident, user=ops)
    incidents.set_postmortem(incident, "  The provider's TLS certificate expired.  ")
    assert Incident.objects.get(pk=incident.pk).postmortem == "The provider's TLS certificate expired."


# --- the runner beside a declared incident -------------------------------------------------------------


def test_it_keeps_a_declared_incident_when_the_probe_goes_hard_down(ops):
    service = make_service("payments", failure_threshold=2)  # tcp to a closed port: down
    incident = declared(service, ops)
    for _ in range(3):
        service.refresh_from_db()
        run_round([service])
    service.refresh_from_db()
    assert service.is_hard_down
    (only,) = Incident.objects.filter(service=service)
    assert only.pk == incident.pk and only.is_open and only.declared_by == ops
    assert only.last_error == service.last_error != ""  # adopted: it carries the probe's error
    assert len(events(Event.Kind.INCIDENT_OPENED)) == 1  # the declaration's, not a second one


def test_it_never_resolves_a_declared_incident_when_the_probe_recovers(ops, tcp_server):
    service = make_service("payments", failure_threshold=1)
    incident = declared(service, ops)
    run_round([service])  # HARD down (closed port): adopted
    service.settings = {"host": "127.0.0.1", "port": tcp_server.port}
    service.save()
    run_round([service])
    service.refresh_from_db()
    assert service.status == "up"
    incident.refresh_from_db()
    assert incident.is_open  # only a person closes it
    assert not events(Event.Kind.INCIDENT_RESOLVED)
    # A probe-driven incident of another service still ends with its recovery, in the same round.
    other = make_service("db", failure_threshold=1)
    run_round([other])
    assert Incident.objects.get(service=other).is_open
    other.settings = {"host": "127.0.0.1", "port": tcp_server.port}
    other.save()
    run_round([service, other])
    assert not Incident.objects.get(service=other).is_open
    assert Incident.objects.get(pk=incident.pk).is_open


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_keeps_a_declaration_that_commits_between_the_runners_look_and_its_insert():
    """The race on PostgreSQL: a person declares after the runner looked for open incidents and before it
    inserts its own. The runner's insert meets the constraint; the round goes on and keeps theirs."""
    ops = make_user("ops")
    service = make_service("payments", failure_threshold=1)
    other = make_service("db", failure_threshold=1)
    done: list[int] = []

    def declare_first(execute, sql, params, many, context):
        if not done and sql.lstrip().upper().startswith('INSERT INTO "HEALTH_INCIDENT"'):
            # Another connection (another process, for the database), committed before this insert runs.
            from django.db.backends.postgresql.base import DatabaseWrapper

            person = DatabaseWrapper(connections["default"].settings_dict, alias="person")
            try:
                with person.cursor() as cursor:
                    cursor.execute(
                        "INSERT INTO health_incident (service_id, opened_at, severity, cause, last_error, "
                        "declared_by_id, postmortem) VALUES (%s, %s, 'warning', 'declared', '', %s, '') RETURNING id",
                        [service.pk, timezone.now(), ops.pk],
                    )
                    done.append(cursor.fetchone()[0])
                person.commit()
            finally:
                person.close()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(declare_first):
        run_round([service, other])
    assert done
    assert list(Incident.objects.filter(service=service, resolved_at__isnull=True).values_list("pk", flat=True)) == done
    assert Incident.objects.filter(service=other, resolved_at__isnull=True).count() == 1  # the rest still opened
    assert [e.data["incident"] for e in events(Event.Kind.INCIDENT_OPENED)] == [Incident.objects.get(service=other).pk]


def test_it_sends_a_public_update_to_a_real_json_channel(ops, http_server, settings):
    settings.NOTIFY_RETRY_SECONDS = 0
    Channel.objects.create(name="ops", url=f"json://127.0.0.1:{http_server.port}/hook")
    incident = Incident.objects.create(service=make_service("web"), cause="refused")
    incidents.post_update(incident, status="identified", message="A bad deploy; rolling back", author=ops)
    incidents.post_update(incident, status="monitoring", message="internal: watch the queue", public=False, author=ops)
    outbox.process_outbox()
    sent = [json.loads(r["body"]) for r in http_server.requests if r["path"] == "/hook"]
    assert len(sent) == 1
    assert sent[0]["title"] == "web incident update: identified"
    assert "A bad deploy; rolling back" in sent[0]["message"]
    assert sent[0]["type"] == "info"
    assert not any("internal" in json.dumps(m) for m in sent)
