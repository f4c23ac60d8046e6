"""`manage.py slareport --month YYYY-MM [--service NAME …] [--format text|csv|json]`: the month of
tests/health/sla_month.py in each format, and bad input as a named error with a non-zero exit code."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from health.sla import METHOD
from tests.factories import ServiceFactory
from tests.health.sla_month import END, EXPECTED, EXPECTED_EXCLUDED, MONTH, Month, month
from tests.opsportal.test_settings import value

__all__ = ["month"]

pytestmark = pytest.mark.django_db
NAMES = ("batch", "db", "web")


def run(*args: str) -> str:
    out = io.StringIO()
    with time_machine.travel(END, tick=False):
        call_command("slareport", *args, stdout=out)
    return out.getvalue()


def text_rows(text: str) -> dict[str, tuple]:
    """The table's rows by service: availability, then the five times in minutes."""
    rows = {}
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] in NAMES:
            figure = None if cells[1:3] == ["no", "data"] else float(cells[1])
            rows[cells[0]] = (figure, *(float(c) for c in cells[-5:]))
    return rows


def test_it_prints_the_month_as_a_table_with_its_method(month: Month):
    text = run("--month", MONTH)
    lines = text.splitlines()
    assert lines[0] == "SLA report 2026-11 (Europe/Berlin: 2026-10-31 23:00 UTC to 2026-11-30 23:00 UTC, 43200.0 min)"
    assert lines[1] == "Dependency time: counted as downtime, shown apart (SLA_EXCLUDE_DEPENDENCY_DOWNTIME=false)"
    assert re.split(r"\s{2,}", lines[3]) == [
        "service",
        "availability",
        "probed min",
        "downtime min",
        "maintenance min",
        "dependency min",
        "unknown min",
    ]
    assert text_rows(text) == {n: EXPECTED[n] for n in NAMES}
    assert re.search(r"^web +99\.424 % +41640\.0 +240\.0 +120\.0 +180\.0 +1440\.0$", text, re.MULTILINE)
    assert re.search(r"^batch +no data +0\.0 ", text, re.MULTILINE)  # never probed: no figure, not 100 %
    assert lines[-1] == "Method: " + METHOD


def test_it_writes_csv_that_the_csv_module_reads(month: Month):
    rows = list(csv.DictReader(io.StringIO(run("--month", MONTH, "--format", "csv"))))
    assert [r["service"] for r in rows] == list(NAMES)
    for r in rows:
        availability = float(r["availability_pct"]) if r["availability_pct"] else None
        times = tuple(
            float(r[k]) for k in ("probed_min", "downtime_min", "maintenance_min", "dependency_min", "unknown_min")
        )
        assert (availability, *times) == EXPECTED[r["service"]]
        assert (r["month"], r["dependency_excluded"], r["interval_s"]) == (MONTH, "false", "3600")
        assert (r["period_start_utc"], r["period_end_utc"]) == (
            "2026-10-31T23:00:00+00:00",
            "2026-11-30T23:00:00+00:00",
        )
    web = rows[2]
    assert (web["results_counted"], web["results_answered"], web["results_maintenance"], web["results_dependency"]) == (
        "694",
        "690",
        "2",
        "3",
    )
    assert rows[0]["availability_pct"] == rows[0]["uptime_pct"] == ""


def test_it_writes_json_that_json_loads_reads(month: Month):
    answer = json.loads(run("--month", MONTH, "--format", "json"))
    assert {k: answer[k] for k in ("month", "timeZone", "start", "end", "complete", "periodMinutes")} == {
        "month": MONTH,
        "timeZone": "Europe/Berlin",
        "start": "2026-10-31T23:00:00+00:00",
        "end": "2026-11-30T23:00:00+00:00",
        "complete": True,
        "periodMinutes": 43200.0,
    }
    assert answer["excludeDependencyDowntime"] is False
    assert answer["method"] == METHOD
    keys = (
        "availability",
        "probedMinutes",
        "downtimeMinutes",
        "maintenanceMinutes",
        "dependencyMinutes",
        "unknownMinutes",
    )
    assert {s["service"]: tuple(s[k] for k in keys) for s in answer["services"]} == {n: EXPECTED[n] for n in NAMES}
    web = answer["services"][2]
    assert web["results"] == {
        "counted": 694,
        "answered": 690,
        "failed": 4,
        "maintenance": 2,
        "misconfigured": 0,
        "dependency": 3,
    }
    assert web["uptime"] == web["availability"]


def test_it_excludes_dependency_time_with_the_setting_and_reports_only_the_services_named(month: Month, settings):
    settings.SLA_EXCLUDE_DEPENDENCY_DOWNTIME = True
    text = run("--month", MONTH, "--service", "web", "db")
    assert "Dependency time: excluded from downtime (SLA_EXCLUDE_DEPENDENCY_DOWNTIME=true)" in text
    assert text_rows(text) == {n: EXPECTED_EXCLUDED[n] for n in ("web", "db")}
    answer = json.loads(run("--month", MONTH, "--service", "web", "--format", "json"))
    assert answer["excludeDependencyDowntime"] is True
    ((web),) = answer["services"]
    assert (web["availability"], web["uptime"], web["downtimeMinutes"]) == (99.855, 99.424, 60.0)
    rows = list(
        csv.DictReader(io.StringIO(run("--month", MONTH, "--service", "web", "--service", "db", "--format", "csv")))
    )
    assert [(r["service"], r["dependency_excluded"], r["downtime_min"]) for r in rows] == [
        ("web", "true", "60.0"),
        ("db", "true", "300.0"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13"], "month must be YYYY-MM with MM from 01 to 12, got '2026-13'"),
        (["--month", "Nov"], "month must be YYYY-MM (e.g. 2026-11), got 'Nov'"),
        (["--month", "2027-02"], "month 2027-02 has not begun yet (UTC)"),
        (["--month", "2026-11", "--service", "db", "nope"], "unknown service: nope"),
        (["--month", "2026-11", "--format", "xml"], "--format must be one of text, csv, json, got 'xml'"),
    ],
)
def test_it_refuses_bad_input_naming_the_problem(args, message, settings):
    settings.TIME_ZONE = "UTC"
    ServiceFactory(name="db")
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert str(caught.value) == message


@pytest.mark.system
def test_it_fails_in_its_own_process_with_exit_code_1_and_the_message(tmp_path: Path):
    """As an operator runs it: manage.py in its own process (a file database), the error on stderr, exit code 1,
    no traceback. (In this process, manage.py's error path closes the database connections under the test.)"""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SECRET_KEY": "k" * 50,
        "DEBUG": "false",
        "TIME_ZONE": "UTC",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
        "LOG_DIR": str(tmp_path / "logs"),
    }
    manage = [sys.executable, str(Path(django_settings.BASE_DIR) / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, timeout=120)
    cases = {
        ("--month", "2026-13"): "month must be YYYY-MM with MM from 01 to 12, got '2026-13'",
        ("--month", "2026-11", "--service", "nope"): "unknown service: nope",
        ("--month", "2026-11", "--format", "xml"): "--format must be one of text, csv, json, got 'xml'",
    }
    for args, message in cases.items():
        done = subprocess.run([*manage, "slareport", *args], env=env, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr.strip()) == (1, "", f"CommandError: {message}"), args
    done = subprocess.run(
        [*manage, "slareport", "--month", "2026-11"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == [
        "SLA report 2026-11 (UTC: 2026-11-01 00:00 UTC to 2026-12-01 00:00 UTC, 43200.0 min)",
        "Dependency time: counted as downtime, shown apart (SLA_EXCLUDE_DEPENDENCY_DOWNTIME=false)",
        "",
        "(no services)",
    ]


@pytest.mark.system
def test_the_setting_is_read_from_the_environment(tmp_path: Path):
    assert value(tmp_path, "s.SLA_EXCLUDE_DEPENDENCY_DOWNTIME") is False
    assert value(tmp_path, "s.SLA_EXCLUDE_DEPENDENCY_DOWNTIME", SLA_EXCLUDE_DEPENDENCY_DOWNTIME="true") is True
