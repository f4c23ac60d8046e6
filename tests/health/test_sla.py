"""The SLA report (health.sla): a month of real probe rounds with maintenance, a parent's outage and a monitor gap
gives the stated figures, the same as /health/uptime for the window, from raw rows and from rollups alike."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client

from health import rollups, sla
from health.models import HourlyRollup, Incident, ProbeResult
from tests.health.sla_month import END, EXPECTED, EXPECTED_EXCLUDED, INTERVAL, MONTH, START, Month, month, utc

__all__ = ["month"]

pytestmark = pytest.mark.django_db


def figures(report: sla.SlaReport) -> dict[str, tuple]:
    return {
        s.service: (
            sla._pct(s.availability),
            *(sla.minutes(v) for v in (s.probed_s, s.downtime_s, s.maintenance_s, s.dependency_s, s.unknown_s)),
        )
        for s in report.services
    }


def at_month_end(**kwargs) -> sla.SlaReport:
    with time_machine.travel(END, tick=False):
        return sla.report(MONTH, **kwargs)


def uptime_answer() -> dict:
    with time_machine.travel(END, tick=False):
        response = Client().get("/health/uptime")
    assert response.status_code == 200
    return response.json()["services"]


def test_the_month_holds_what_the_scenario_says(month: Month):
    # Built by the runner: db's incidents, web's own one, and web's two linked to db's (the dependency).
    incidents = Incident.objects.order_by("opened_at")
    assert [(i.service.name, i.opened_at, i.parent.service.name if i.parent else None) for i in incidents] == [
        ("db", utc(2026, 10, 31, 22), None),
        ("web", utc(2026, 11, 5, 8), None),
        ("db", utc(2026, 11, 20, 10), None),
        ("web", utc(2026, 11, 20, 10), "db"),
        ("db", utc(2026, 11, 28, 14), None),
        ("web", utc(2026, 11, 28, 15), "db"),
    ]
    assert list(
        ProbeResult.objects.filter(maintenance=True).order_by("checked_at").values_list("service__name", "checked_at")
    ) == [
        ("web", utc(2026, 11, 10, 2)),
        ("web", utc(2026, 11, 10, 3)),
    ]
    gap = ProbeResult.objects.filter(checked_at__gte=utc(2026, 11, 25), checked_at__lt=utc(2026, 11, 26))
    assert not gap.exists()
    assert month.rounds == 2 + 696


def test_it_states_each_services_month_exactly(month: Month):
    report = at_month_end(exclude_dependency=False)
    assert (report.period.start, report.period.end, report.period.complete) == (START, END, True)
    assert report.period.seconds == 30 * 24 * 3600
    assert figures(report) == {name: EXPECTED[name] for name in ("batch", "db", "web")}
    web = {s.service: s for s in report.services}["web"]
    assert (web.counted, web.ok, web.maintenance, web.dependency, web.misconfigured) == (694, 690, 2, 3, 0)
    # Every minute of the month is accounted for once: probed, maintenance or unknown (dependency is in probed).
    for s in report.services:
        assert s.probed_s + s.maintenance_s + s.unknown_s == report.period.seconds
    batch = {s.service: s for s in report.services}["batch"]
    assert batch.availability is None and batch.unknown_s == report.period.seconds  # never probed: unknown, not up


def test_it_leaves_dependency_time_out_of_downtime_when_the_setting_says_so(month: Month, settings):
    settings.SLA_EXCLUDE_DEPENDENCY_DOWNTIME = True
    report = at_month_end()
    assert report.exclude_dependency is True
    assert figures(report) == {name: EXPECTED_EXCLUDED[name] for name in ("batch", "db", "web")}
    for s in report.services:
        assert s.probed_s + s.maintenance_s + s.dependency_s + s.unknown_s == report.period.seconds
    settings.SLA_EXCLUDE_DEPENDENCY_DOWNTIME = False
    assert figures(at_month_end()) == {name: EXPECTED[name] for name in ("batch", "db", "web")}


def test_it_answers_what_health_uptime_answers_for_the_same_window(month: Month):
    answer = uptime_answer()
    report = at_month_end(exclude_dependency=False)
    for s in report.services:
        thirty = answer[s.service]["30d"]
        assert sla._pct(s.availability) == sla._pct(s.uptime) == thirty["uptime"]
        assert (s.counted, s.maintenance) == (thirty["counted"], thirty["maintenance"])
    assert answer["web"]["30d"] == {"uptime": 99.424, "counted": 694, "maintenance": 2}
    # Excluding dependency time changes the SLA figure, never the uptime it is compared with.
    excluded = {s.service: s for s in at_month_end(exclude_dependency=True).services}
    assert sla._pct(excluded["web"].uptime) == answer["web"]["30d"]["uptime"]
    assert sla._pct(excluded["web"].availability) == 99.855


@pytest.mark.slow("rolls up and prunes a month of results")
def test_it_gives_the_same_figures_once_the_month_is_rolled_up_and_pruned(month: Month, settings):
    settings.RAW_RETENTION_DAYS = 7
    with time_machine.travel(END, tick=False):
        rollups.prune()
    assert rollups.rolled_until() == END - dt.timedelta(hours=1)
    assert not ProbeResult.objects.filter(checked_at__lt=END - dt.timedelta(days=7)).exists()
    assert HourlyRollup.objects.filter(service__name="web", hour=utc(2026, 11, 20, 10)).get().down == 1
    # Outage A and the maintenance now come from rollups only; outage B from rollups beside kept raw rows.
    assert figures(at_month_end(exclude_dependency=False)) == {n: EXPECTED[n] for n in ("batch", "db", "web")}
    assert figures(at_month_end(exclude_dependency=True)) == {n: EXPECTED_EXCLUDED[n] for n in ("batch", "db", "web")}
    answer = uptime_answer()
    assert {n: answer[n]["30d"]["uptime"] for n in answer} == {n: EXPECTED[n][0] for n in ("batch", "db", "web")}


def test_it_reports_only_the_services_named_in_the_order_given(month: Month):
    with time_machine.travel(END, tick=False):
        report = sla.report(MONTH, ["web", "db", "web"])
    assert [s.service for s in report.services] == ["web", "db"]
    with time_machine.travel(END, tick=False), pytest.raises(sla.SlaError, match=r"^unknown service: nope, gone$"):
        sla.report(MONTH, ["db", "nope", "gone"])


def test_a_month_still_running_counts_until_now_and_says_so(month: Month):
    when = utc(2026, 11, 10, 12)
    with time_machine.travel(when, tick=False):
        report = sla.report(MONTH, ["web"])
    assert (report.period.until, report.period.complete) == (when, False)
    (web,) = report.services
    assert report.period.seconds == int((when - START).total_seconds())
    assert web.counted == int((when - START).total_seconds()) // INTERVAL + 1 - 2  # the result at now counts
    assert "month so far" in report.to_text()


# --- months (no database) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "zone", "start", "end", "hours"),
    [
        ("2026-11", "Europe/Berlin", utc(2026, 10, 31, 23), utc(2026, 11, 30, 23), 30 * 24),
        ("2026-10", "Europe/Berlin", utc(2026, 9, 30, 22), utc(2026, 10, 31, 23), 31 * 24 + 1),  # autumn back
        ("2026-03", "Europe/Berlin", utc(2026, 2, 28, 23), utc(2026, 3, 31, 22), 31 * 24 - 1),  # spring forward
        ("2026-03", "America/New_York", utc(2026, 3, 1, 5), utc(2026, 4, 1, 4), 31 * 24 - 1),
        ("2026-12", "UTC", utc(2026, 12, 1), utc(2027, 1, 1), 31 * 24),
        ("2028-02", "UTC", utc(2028, 2, 1), utc(2028, 3, 1), 29 * 24),
    ],
)
def test_it_takes_the_month_in_the_time_zone_dst_included(label, zone, start, end, hours):
    period = sla.month_period(label, now=utc(2030, 1, 1), time_zone=zone)
    assert (period.start, period.end, period.until) == (start, end, end)
    assert period.seconds == hours * 3600


def test_it_reads_time_zone_from_settings(settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    period = sla.month_period("2026-11", now=utc(2030, 1, 1))
    assert (period.time_zone, period.start) == ("Asia/Tokyo", utc(2026, 10, 31, 15))
    assert sla.previous_month(now=utc(2026, 11, 30, 16)) == "2026-11"  # already 1 December in Tokyo
    assert sla.previous_month(now=utc(2026, 11, 30, 14)) == "2026-10"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-13", "month must be YYYY-MM with MM from 01 to 12, got '2026-13'"),
        ("2026-00", "month must be YYYY-MM with MM from 01 to 12, got '2026-00'"),
        ("2026-1", "month must be YYYY-MM (e.g. 2026-11), got '2026-1'"),
        ("november", "month must be YYYY-MM (e.g. 2026-11), got 'november'"),
        ("", "month must be YYYY-MM (e.g. 2026-11), got ''"),
        ("0999-01", "month must be in the years 1970-9998, got '0999-01'"),
        ("2027-01", "month 2027-01 has not begun yet (UTC)"),
    ],
)
def test_it_refuses_a_bad_month_naming_it(text, message, settings):
    settings.TIME_ZONE = "UTC"
    with pytest.raises(sla.SlaError) as caught:
        sla.month_period(text, now=utc(2026, 12, 1))
    assert str(caught.value) == message


def test_it_refuses_an_unknown_format():
    report = sla.SlaReport(sla.month_period("2026-11", now=utc(2027, 1, 1), time_zone="UTC"), False, [])
    with pytest.raises(sla.SlaError, match="format must be one of text, csv, json, got 'xml'"):
        report.render("xml")
