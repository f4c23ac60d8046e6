"""The SLA report page (/reports/sla/): staff only, a month picked with a GET form, the numbers of the report
(tests/health/sla_month.py's month), CSV and JSON downloads of the same, and bad input as a form error (400)."""

from __future__ import annotations

import csv
import io
import re

import pytest
import time_machine
from django.test import Client

from health.sla import METHOD
from tests.dashboard.dashboard_fixtures import staff_client, user_client
from tests.factories import ServiceFactory
from tests.health.sla_month import END, EXPECTED, EXPECTED_EXCLUDED, Month, month, utc

__all__ = ["month", "staff_client", "user_client"]

pytestmark = pytest.mark.django_db
URL = "/reports/sla/"
CELLS = ("availability", "probed", "downtime", "maintenance", "dependency", "unknown")


def get(client: Client, query: str = ""):
    with time_machine.travel(END, tick=False):
        return client.get(URL + query)


def page_rows(html: str) -> dict[str, tuple]:
    """The table's numbers by service, as the page shows them."""
    rows = {}
    for name, body in re.findall(r'<tr id="sla-([\w-]+)">(.*?)</tr>', html, flags=re.DOTALL):
        cells = dict(re.findall(r'<td class="(\w+)">(.*?)</td>', body, flags=re.DOTALL))
        figure = cells["availability"]
        availability = None if figure == "no data" else float(figure.removesuffix(" %"))
        rows[name] = (availability, *(float(cells[c]) for c in CELLS[1:]))
    return rows


def test_it_sends_anonymous_users_to_the_login_page_and_forbids_non_staff(user_client):
    response = Client().get(URL + "?month=2026-11")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert user_client.get(URL).status_code == 403


def test_it_shows_the_months_numbers_and_its_method(month: Month, staff_client):
    response = get(staff_client, "?month=2026-11")
    assert response.status_code == 200
    html = response.content.decode()
    assert page_rows(html) == {n: EXPECTED[n] for n in ("batch", "db", "web")}
    assert "Europe/Berlin: 2026-10-31 23:00 UTC to 2026-11-30 23:00 UTC." in html
    assert "<code>SLA_EXCLUDE_DEPENDENCY_DOWNTIME=false</code>" in html
    assert METHOD.replace("'", "&#x27;") in html
    assert 'value="2026-11"' in html and 'type="month"' in html  # the picker keeps the month
    assert f'href="{URL}" aria-current="page">SLA</a>' in html  # the nav link


def test_its_downloads_hold_the_same_numbers(month: Month, staff_client):
    html = get(staff_client, "?month=2026-11&service=web&service=db").content.decode()
    assert page_rows(html) == {n: EXPECTED[n] for n in ("web", "db")}
    links = dict(re.findall(r'<a href="(\?[^"]*format=(csv|json)[^"]*)" download>', html))
    links = {kind: href.replace("&amp;", "&") for href, kind in links.items()}
    assert set(links) == {"csv", "json"}

    response = get(staff_client, links["csv"])
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="sla-2026-11.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [
        (r["service"], float(r["availability_pct"]), float(r["downtime_min"]), float(r["dependency_min"])) for r in rows
    ] == [("web", 99.424, 240.0, 180.0), ("db", 99.282, 300.0, 0.0)]

    response = get(staff_client, links["json"])
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="sla-2026-11.json"'
    answer = response.json()
    keys = (
        "availability",
        "probedMinutes",
        "downtimeMinutes",
        "maintenanceMinutes",
        "dependencyMinutes",
        "unknownMinutes",
    )
    assert {s["service"]: tuple(s[k] for k in keys) for s in answer["services"]} == {
        n: EXPECTED[n] for n in ("web", "db")
    }


def test_it_shows_dependency_time_excluded_with_the_setting(month: Month, staff_client, settings):
    settings.SLA_EXCLUDE_DEPENDENCY_DOWNTIME = True
    html = get(staff_client, "?month=2026-11").content.decode()
    assert page_rows(html) == {n: EXPECTED_EXCLUDED[n] for n in ("batch", "db", "web")}
    assert "<code>SLA_EXCLUDE_DEPENDENCY_DOWNTIME=true</code>" in html
    # Beside the SLA figure, the uptime /health/uptime gives, which the exclusion does not change.
    assert re.search(r'<tr id="sla-web">.*?<td class="uptime">99\.424 %</td>', html, flags=re.DOTALL)
    assert get(staff_client, "?month=2026-11&format=json").json()["excludeDependencyDowntime"] is True


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?month=2026-13", "month: month must be YYYY-MM with MM from 01 to 12, got &#x27;2026-13&#x27;"),
        ("?month=13/2026", "month: month must be YYYY-MM (e.g. 2026-11), got &#x27;13/2026&#x27;"),
        ("?month=2027-01", "month: month 2027-01 has not begun yet (UTC)"),
        ("?month=2026-11&service=nope", "service: unknown service: nope"),
        ("?month=2026-11&format=xml", "format: format must be csv or json (or none for the page), got xml"),
    ],
)
def test_it_answers_bad_input_with_a_form_error(staff_client, settings, query, message):
    settings.TIME_ZONE = "UTC"
    ServiceFactory(name="db")
    response = get(staff_client, query)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert message in html
    assert 'role="alert"' in html and "<table" not in html
    assert "Traceback" not in html


def test_it_shows_the_last_complete_month_unless_one_is_picked(month: Month, staff_client, settings):
    # The same rounds read as a UTC month: db's failure at 23:00 UTC on 31 October is October's now, and the
    # month's last hour (23:00 UTC on 30 November, after the last round) is unknown.
    settings.TIME_ZONE = "UTC"
    with time_machine.travel(utc(2026, 12, 1, 0, 5), tick=False):
        html = staff_client.get(URL).content.decode()
    assert '<h1>SLA report <span class="count">2026-11</span></h1>' in html
    assert 'value="2026-11"' in html
    assert "UTC: 2026-11-01 00:00 UTC to 2026-12-01 00:00 UTC." in html
    assert page_rows(html)["db"] == (round(100 * 691 / 695, 3), 695 * 60.0, 240.0, 0.0, 0.0, 1500.0)
    assert page_rows(html)["batch"] == (None, 0.0, 0.0, 0.0, 0.0, 30 * 24 * 60.0)  # no results: unknown, not up
