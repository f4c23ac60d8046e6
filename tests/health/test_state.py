"""The state machine: Service.apply_outcome, overall_status, and incidents opened/resolved by record()."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from health.models import HARD, HEALTHY, PAUSED, SOFT, UNKNOWN, Event, Incident, StateChange, overall_status
from health.probes.base import DEGRADED, DOWN, UP, ProbeOutcome
from health.runner import record
from tests.factories import IncidentFactory, ServiceFactory

pytestmark = pytest.mark.django_db

FAIL = ProbeOutcome(DOWN, None, "connect failed")
OK = ProbeOutcome(UP, 3.0, "HTTP 200")
SLOW = ProbeOutcome(DEGRADED, 2500.0, "slow")


def probe(service, outcome: ProbeOutcome):
    """Record one probe of one service, as a round does."""
    (transition,) = record([service], {service.name: outcome}, timezone.now())
    return transition


def test_it_goes_soft_then_hard_after_failure_threshold():
    service = ServiceFactory.build(failure_threshold=3)
    now = timezone.now()
    steps = [service.apply_outcome(FAIL, now) for _ in range(4)]
    assert service.consecutive_failures == 4
    assert [t.became_hard_down for t in steps] == [False, False, True, False]
    assert [t.changed for t in steps] == [True, False, True, False]
    assert service.state_type == HARD


def test_it_tracks_soft_and_hard_through_state_type():
    service = ServiceFactory.build(failure_threshold=2)
    now = timezone.now()
    service.apply_outcome(FAIL, now)
    assert (service.status, service.state_type) == (DOWN, SOFT)
    assert not service.is_hard_down
    service.apply_outcome(FAIL, now)
    assert (service.status, service.state_type) == (DOWN, HARD)
    assert service.is_hard_down
    assert service.last_error == "connect failed"


def test_it_goes_hard_at_once_with_a_threshold_of_one():
    service = ServiceFactory.build(failure_threshold=1)
    t = service.apply_outcome(FAIL, timezone.now())
    assert t.became_hard_down
    assert service.state_type == HARD


def test_it_recovers_and_resets_the_counters():
    service = ServiceFactory.build(failure_threshold=1)
    now = timezone.now()
    service.apply_outcome(FAIL, now)
    t = service.apply_outcome(OK, now)
    assert t.recovered and t.changed
    assert (t.old_status, t.old_type) == (DOWN, HARD)
    assert (service.status, service.state_type) == (UP, HARD)
    assert service.consecutive_failures == 0
    assert service.consecutive_successes == 1
    assert service.last_latency_ms == 3.0
    assert service.status_changed_at == now


def test_it_counts_degraded_as_answering_not_failing():
    service = ServiceFactory.build(failure_threshold=1)
    now = timezone.now()
    service.apply_outcome(FAIL, now)
    t = service.apply_outcome(SLOW, now)
    assert service.status == DEGRADED
    assert service.consecutive_failures == 0
    assert t.recovered


def test_it_keeps_a_paused_service_paused_whatever_it_answers():
    service = ServiceFactory.build(failure_threshold=1, enabled=False)
    t = service.apply_outcome(FAIL, timezone.now())
    assert service.status == PAUSED
    assert not t.became_hard_down
    maintenance = ServiceFactory.build(paused=True)
    maintenance.apply_outcome(OK, timezone.now())
    assert maintenance.status == PAUSED


def test_it_opens_an_incident_only_on_hard_down_and_resolves_it_on_recovery():
    service = ServiceFactory(failure_threshold=2, critical=True)
    probe(service, FAIL)
    assert not Incident.objects.exists()  # SOFT: no incident yet
    probe(service, FAIL)
    incident = Incident.objects.get()
    assert incident.is_open
    assert incident.severity == Incident.Severity.CRITICAL
    assert incident.cause == "connect failed"
    assert Event.objects.filter(kind=Event.Kind.INCIDENT_OPENED, service=service).count() == 1
    probe(service, OK)
    incident.refresh_from_db()
    assert not incident.is_open
    assert Event.objects.filter(kind=Event.Kind.INCIDENT_RESOLVED, service=service).count() == 1
    service.refresh_from_db()
    assert (service.status, service.consecutive_failures) == (UP, 0)


def test_it_keeps_one_open_incident_however_long_it_stays_down():
    service = ServiceFactory(failure_threshold=1)
    for i in range(5):
        probe(service, ProbeOutcome(DOWN, None, f"failure {i}"))
    incident = Incident.objects.get()
    assert incident.is_open
    assert incident.cause == "failure 0"
    assert incident.last_error == "failure 4"  # the latest error is kept on the open incident


def test_it_opens_a_new_incident_for_a_new_outage():
    service = ServiceFactory(failure_threshold=1)
    probe(service, FAIL)
    probe(service, OK)
    probe(service, FAIL)
    assert Incident.objects.filter(service=service).count() == 2
    assert Incident.objects.filter(service=service, resolved_at__isnull=True).count() == 1


def test_it_does_not_open_a_second_incident_when_one_is_already_open():
    service = ServiceFactory(failure_threshold=1)
    IncidentFactory(service=service, cause="opened by hand")
    probe(service, FAIL)
    assert Incident.objects.filter(service=service).count() == 1


def test_it_opens_a_warning_incident_for_a_non_critical_service():
    service = ServiceFactory(failure_threshold=1, critical=False)
    probe(service, FAIL)
    assert Incident.objects.get(service=service).severity == Incident.Severity.WARNING


def test_it_opens_no_incident_for_a_paused_service():
    service = ServiceFactory(failure_threshold=1, paused=True)
    probe(service, FAIL)
    assert not Incident.objects.exists()
    service.refresh_from_db()
    assert service.status == PAUSED


def test_it_enforces_one_open_incident_in_the_database():
    service = ServiceFactory()
    IncidentFactory(service=service)
    with pytest.raises(IntegrityError), transaction.atomic():
        IncidentFactory(service=service)
    # Closed incidents do not count against the constraint.
    IncidentFactory(service=service, resolved_at=timezone.now())
    assert Incident.objects.filter(service=service).count() == 2


def test_it_records_a_state_change_row_for_each_change_only():
    service = ServiceFactory(failure_threshold=2)
    for outcome in (OK, OK, FAIL, FAIL, FAIL, OK):
        probe(service, outcome)
    changes = list(StateChange.objects.filter(service=service).order_by("pk"))
    assert [(c.old_status, c.old_type, c.new_status, c.new_type) for c in changes] == [
        (UNKNOWN, HARD, UP, HARD),
        (UP, HARD, DOWN, SOFT),
        (DOWN, SOFT, DOWN, HARD),
        (DOWN, HARD, UP, HARD),
    ]


def _svc(status: str, *, critical: bool = True, state_type: str = HARD, **kw):
    return ServiceFactory.build(status=status, critical=critical, state_type=state_type, **kw)


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        ([_svc(UP), _svc(UP)], HEALTHY),
        ([_svc(UP), _svc(DEGRADED)], DEGRADED),
        ([_svc(UP), _svc(UNKNOWN)], DEGRADED),  # never probed is not known to be up
        ([_svc(UP), _svc(DOWN, critical=False)], DEGRADED),  # non-critical HARD down
        ([_svc(UP), _svc(DOWN, state_type=SOFT)], DEGRADED),  # critical, but only SOFT
        ([_svc(UP), _svc(DOWN)], DOWN),  # critical HARD down
        ([_svc(UP), _svc(DOWN, enabled=False)], HEALTHY),  # disabled: ignored
        ([_svc(UP), _svc(DOWN, paused=True)], HEALTHY),  # in maintenance: ignored
        ([_svc(UP), _svc(PAUSED)], HEALTHY),
        ([_svc(DOWN, critical=False), _svc(DOWN)], DOWN),
    ],
)
def test_it_computes_the_overall_status(services, expected):
    assert overall_status(services) == expected
