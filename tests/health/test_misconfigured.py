"""A configuration error (an unset `dsn_env` variable, a `${VAR}` that is not set) is `misconfigured`:
its own outcome, never an outage (issue 15 item 13).

Not an incident, not downtime, no recovery; one `service_misconfigured` event per streak; the overall
status is `degraded`; the dashboard shows it with the fix; importconfig warns about unset variables.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from dashboard import reports
from dispatch import rounds
from health import rollups
from health.models import Event, Incident, ProbeResult, Service
from health.runner import probe_once
from recovery.engine import recover_services
from recovery.models import RecoveryAttempt
from tests.dashboard.dashboard_fixtures import staff_client  # noqa: F401 - a fixture
from tests.factories import ProbeResultFactory, RecoveryActionFactory, ServiceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def unset_var(monkeypatch) -> str:
    """The name of a variable that is surely not set."""
    name = f"OPSPORTAL_TEST_UNSET_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.delenv(name, raising=False)
    return name


@pytest.fixture(autouse=True)
def auto_recovery_on(settings):
    settings.AUTO_RECOVERY_ENABLED = True


def pg_service(var: str, name: str = "pg", **kw) -> Service:
    kw.setdefault("failure_threshold", 1)
    return ServiceFactory(name=name, kind="postgres", settings={"dsn_env": var}, **kw)


def http_service(server, var: str, name: str = "web", **kw) -> Service:
    # A real server that would answer 200: only the unset variable stands between the probe and `up`.
    return ServiceFactory(
        name=name, kind="http", settings={"url": server.url + "/ok", "headers": {"X-Key": f"${{{var}}}"}}, **kw
    )


def test_it_makes_an_unset_dsn_env_its_own_outcome(unset_var) -> None:
    outcome = probe_once(pg_service(unset_var))
    assert outcome.status == "misconfigured"
    assert unset_var in outcome.detail
    assert f"set {unset_var} in the environment or .env" in outcome.detail


def test_it_makes_an_unset_reference_its_own_outcome(http_server, unset_var) -> None:
    outcome = probe_once(http_service(http_server, unset_var))
    assert outcome.status == "misconfigured"
    assert f"set {unset_var} in the environment or .env" in outcome.detail


def test_it_probes_up_once_the_variable_is_set(http_server, unset_var, monkeypatch) -> None:
    service = http_service(http_server, unset_var)
    monkeypatch.setenv(unset_var, "a-value")
    assert probe_once(service).status == "up"


def test_it_opens_no_incident_starts_no_recovery_and_notifies_once(unset_var, settings) -> None:
    service = pg_service(unset_var, failure_threshold=2)
    RecoveryActionFactory(service=service, auto=True)
    for _ in range(4):
        result = rounds.run([service])
    service.refresh_from_db()
    assert service.status == "misconfigured"
    assert service.consecutive_failures == 0
    assert list(ProbeResult.objects.filter(service=service).values_list("status", flat=True)) == ["misconfigured"] * 4
    assert not Incident.objects.exists()
    assert not RecoveryAttempt.objects.exists()
    assert result.recovery == []
    events = list(Event.objects.filter(service=service))
    assert [e.kind for e in events] == ["service_misconfigured"]
    assert unset_var in events[0].title + events[0].body
    assert f"set {unset_var} in the environment or .env" in events[0].body
    assert result.status == "degraded"
    assert result.exit_code == 1


def test_it_notifies_again_for_a_new_streak(http_server, unset_var, monkeypatch) -> None:
    service = http_service(http_server, unset_var)
    rounds.run([service])
    monkeypatch.setenv(unset_var, "v")
    rounds.run([service])
    assert service.status == "up"
    monkeypatch.delenv(unset_var)
    rounds.run([service])
    rounds.run([service])
    assert Event.objects.filter(kind="service_misconfigured").count() == 2


def test_it_keeps_an_open_incident_open_and_records_no_new_one(unset_var) -> None:
    # A service that was really down, then misconfigured: whether it came back is not known.
    service = pg_service(unset_var)
    service.status, service.state_type, service.consecutive_failures = "down", "hard", 3
    service.save()
    incident = Incident.objects.create(service=service, cause="connection refused")
    rounds.run([service])
    incident.refresh_from_db()
    assert incident.resolved_at is None
    assert Incident.objects.count() == 1


def test_it_never_runs_a_manual_recovery(unset_var, tmp_path: Path) -> None:
    service = pg_service(unset_var)
    marker = tmp_path / "ran"
    RecoveryActionFactory(service=service, settings={"argv": ["touch", str(marker)]})
    rounds.run([service])
    [result] = recover_services([service.name], trigger="manual")
    assert result["skipped"]
    assert "misconfigured" in result["reason"]
    assert not marker.exists()


def test_it_leaves_uptime_and_rollups_unaffected(unset_var) -> None:
    service = pg_service(unset_var)
    now = timezone.now()
    two_hours_ago = now - dt.timedelta(hours=2)
    for minute in range(0, 60, 10):
        ProbeResultFactory(service=service, status="up", checked_at=two_hours_ago.replace(minute=minute))
    for _ in range(3):
        rounds.run([service])
    assert rollups.uptime_by_window([service.pk], now + dt.timedelta(seconds=5))[service.pk]["24h"] == 100.0
    tally = rollups.tallies([service.pk], now - dt.timedelta(hours=3), now + dt.timedelta(minutes=1))[service.pk]
    assert (tally.ok, tally.counted, tally.misconfigured) == (6, 6, 3)
    # The same figure once the hours are rolled up (the misconfigured hour included).
    assert rollups.roll_up(rollups.floor_hour(now) + rollups.HOUR) > 0
    tally = rollups.tallies([service.pk], now - dt.timedelta(hours=3), now + dt.timedelta(minutes=1))[service.pk]
    assert (tally.ok, tally.counted, tally.misconfigured) == (6, 6, 3)
    # The bar: the misconfigured hour is its own state, not downtime; the up hour stays up.
    bar = reports.uptime_bar(reports.hourly([service.pk], now)[service.pk], now)
    assert bar[-1].state == "misconfigured"
    assert bar[-3].state == "up"
    assert "down" not in {seg.state for seg in bar}


def test_it_answers_degraded_in_the_status_api(client, unset_var) -> None:
    service = pg_service(unset_var, critical=True)
    for _ in range(3):
        rounds.run([service])
    response = client.get("/health/status")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["services"]["pg"]["status"] == "misconfigured"
    assert unset_var in body["services"]["pg"]["detail"]


def test_it_shows_the_card_in_red_with_the_fix(staff_client, unset_var) -> None:  # noqa: F811
    service = pg_service(unset_var)
    RecoveryActionFactory(service=service)
    rounds.run([service])
    page = staff_client.get("/").content.decode()
    assert 'class="card st-misconfigured"' in page
    assert "badge st-misconfigured" in page
    assert f"<strong>Fix:</strong> set {unset_var} in the environment or .env" in page
    assert "Recover…" not in page  # no repair can fix a configuration
    detail = staff_client.get("/services/pg/").content.decode()
    assert "banner st-misconfigured" in detail
    assert f"<strong>Fix:</strong> set {unset_var} in the environment or .env" in detail


def test_it_warns_about_unset_variables_at_import_and_still_imports(tmp_path: Path, unset_var) -> None:
    other = unset_var + "_KEY"
    path = tmp_path / "c.toml"
    path.write_text(
        f"""
[[service]]
name = "pg"
kind = "postgres"
dsn_env = "{unset_var}"

[[service]]
name = "web"
kind = "http"
url = "http://127.0.0.1:9/"
headers = {{X-Key = "${{{other}}}"}}
""",
        encoding="utf-8",
    )
    out, err = io.StringIO(), io.StringIO()
    call_command("importconfig", str(path), stdout=out, stderr=err)
    warnings = err.getvalue()
    assert f"service[0] (pg).dsn_env: environment variable {unset_var} is not set" in warnings
    assert f"service[1] (web).headers.X-Key: environment variable {other} is not set" in warnings
    assert f"set {unset_var} in the environment or .env" in warnings
    assert set(Service.objects.values_list("name", flat=True)) == {"pg", "web"}


def test_it_does_not_warn_about_variables_that_are_set(tmp_path: Path, unset_var, monkeypatch) -> None:
    monkeypatch.setenv(unset_var, "postgresql://u@127.0.0.1/db")
    path = tmp_path / "c.toml"
    path.write_text(f'[[service]]\nname = "pg"\nkind = "postgres"\ndsn_env = "{unset_var}"\n', encoding="utf-8")
    err = io.StringIO()
    call_command("importconfig", str(path), stdout=io.StringIO(), stderr=err)
    assert unset_var not in err.getvalue()
