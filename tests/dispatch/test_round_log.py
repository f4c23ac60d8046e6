"""The probe round's log line, as the real round writes it: which services it probed out of how many, what they
are now, and the whole portal's overall status (a round of one service while two are down must not read as
"overall healthy"), with the plurals right."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from dispatch import rounds
from health.models import Service, overall_status
from health.runner import portal_counts, portal_words
from tests.core.outage_support import quick_db_hardening, unwritable
from tests.factories import ServiceFactory
from tests.servers import free_port

SECONDS = r"in \d+\.\d\d s"


@pytest.fixture
def round_log(caplog) -> Iterator[pytest.LogCaptureFixture]:
    """The `opsportal` logger does not propagate: pytest's capture handler hangs on it directly."""
    logger = logging.getLogger("opsportal")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)


def round_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Probe round")]


def tcp(name: str, port: int, **fields) -> Service:
    return ServiceFactory(name=name, settings={"host": "127.0.0.1", "port": port}, failure_threshold=1, **fields)


@pytest.fixture
def two_down(tcp_server) -> tuple[Service, Service, Service]:
    """web answers; db and cache (nothing listens on their port) are HARD down after a real round."""
    closed = free_port()
    web = tcp("web", tcp_server.port)
    db, cache = tcp("db", closed, critical=False), tcp("cache", closed, critical=False)
    rounds.run([db, cache], recover=False)
    assert Service.objects.filter(status="down").count() == 2
    return web, db, cache


@pytest.mark.django_db
def test_it_says_a_round_of_one_service_is_one_of_three_and_the_portal_is_degraded(two_down, round_log):
    web, _, _ = two_down
    round_log.clear()
    result = rounds.run([web], recover=False)
    assert result.status == "healthy"  # the round's own answer (runprobes web exits 0) ...
    (line,) = round_lines(round_log)
    # ... but its log line does not pass that off as the portal's.
    assert re.fullmatch(
        rf"Probe round of 1 of 3 services \(web\) {SECONDS}: 1 up; portal overall degraded \(2 down\)", line
    )
    assert "overall healthy" not in line


@pytest.mark.django_db
def test_it_says_down_when_a_critical_service_is_hard_down(two_down, round_log):
    web, db, _ = two_down
    Service.objects.filter(pk=db.pk).update(critical=True)
    round_log.clear()
    rounds.run([web], recover=False)
    (line,) = round_lines(round_log)
    assert line.endswith("; portal overall down (2 down)")


@pytest.mark.django_db
def test_it_counts_the_subset_and_the_whole_portal_in_a_round_of_every_service(two_down, round_log):
    round_log.clear()
    rounds.run(recover=False)  # every enabled service: the scheduler's and `runprobes`' default
    (line,) = round_lines(round_log)
    assert re.fullmatch(rf"Probe round of all 3 services {SECONDS}: 1 up, 2 down; portal overall degraded", line)
    _, db, cache = two_down
    round_log.clear()
    rounds.run([db, cache], recover=False)
    (line,) = round_lines(round_log)
    assert re.fullmatch(
        rf"Probe round of 2 of 3 services \(db, cache\) {SECONDS}: 2 down; portal overall degraded \(2 down\)", line
    )


@pytest.mark.django_db
def test_it_gets_the_singular_right_for_a_portal_of_one_service(tcp_server, round_log):
    web = tcp("web", tcp_server.port)
    rounds.run([web], recover=False)
    (line,) = round_lines(round_log)
    assert re.fullmatch(rf"Probe round of the only service \(web\) {SECONDS}: 1 up; portal overall healthy", line)
    assert "1 services" not in line


@pytest.mark.django_db
def test_it_names_only_the_first_few_services_of_a_large_round(tcp_server, round_log):
    services = [tcp(f"svc-{n:02}", tcp_server.port) for n in range(8)]
    tcp("other", tcp_server.port)
    rounds.run(services, recover=False)
    (line,) = round_lines(round_log)
    assert "Probe round of 8 of 9 services (svc-00, svc-01, svc-02, svc-03, svc-04, +3 more) in " in line
    assert line.endswith(": 8 up; portal overall degraded (1 unknown)")  # 'other', never probed, is not known up


@pytest.mark.django_db
def test_it_counts_a_disabled_service_probed_by_name_as_one_more(tcp_server, round_log):
    tcp("web", tcp_server.port)
    old = tcp("old", tcp_server.port, enabled=False)
    rounds.run([old], recover=False)
    (line,) = round_lines(round_log)
    assert re.fullmatch(
        rf"Probe round of 1 of 2 services \(old\) {SECONDS}: 1 paused; portal overall degraded \(1 unknown\)", line
    )


@pytest.mark.django_db
def test_it_answers_the_portal_as_overall_status_does():
    # The counted query and overall_status() over the rows must agree, whatever the mix.
    rows = [
        dict(name="up1", status="up"),
        dict(name="deg", status="degraded"),
        dict(name="soft", status="down", state_type="soft"),
        dict(name="mis", status="misconfigured"),
        dict(name="new", status="unknown"),
        dict(name="paused", status="paused", paused=True),
        dict(name="maint", status="down", state_type="hard", in_maintenance=True),
        dict(name="off", status="down", state_type="hard", enabled=False),
        dict(name="minor", status="down", state_type="hard", critical=False),
        dict(name="major", status="down", state_type="hard"),
    ]
    for upto in range(1, len(rows) + 1):
        Service.objects.all().delete()
        for row in rows[:upto]:
            ServiceFactory(**row)
        expected = overall_status(list(Service.objects.all()))
        words = portal_words(portal_counts())
        assert words.startswith(f"portal overall {expected}"), (rows[upto - 1]["name"], words)
    assert words == "portal overall down (1 degraded, 3 down, 1 misconfigured, 1 unknown)"


@pytest.mark.django_db(transaction=True)
def test_it_says_the_portal_is_unknown_when_the_database_is_unwritable(settings, tmp_path, tcp_server, round_log):
    settings.AUTO_RECOVERY_ENABLED = False
    web = tcp("web", tcp_server.port)
    tcp("db", tcp_server.port)
    with quick_db_hardening(settings, tmp_path), unwritable():
        rounds.run([web], recover=False)
    messages = [r.getMessage() for r in round_log.records]
    assert any(m.endswith("probe round of 1 service spooled") for m in messages), messages
    (line,) = round_lines(round_log)
    # The round never waits on the database it just found away, nor guesses out of how many (not "the only").
    assert re.fullmatch(
        rf"Probe round of 1 service \(web\) {SECONDS}: 1 up; portal overall unknown \(database unavailable\)",
        line,
    )
