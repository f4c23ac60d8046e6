"""The `push` kind: a heartbeat judged from its pings (period or cron in a time zone, grace, max_runtime)."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.spec import ConfigError
from health.models import Ping, Service
from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError
from health.probes.push import PushProbe, next_tick
from health.windows import parse_cron, zone
from tests.factories import make_service

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def push(name: str = "nightly", **settings: Any) -> Service:
    return make_service(name, kind="push", settings=settings or {"period": 3600, "grace": 60})


def ping(service: Service, kind: str, at: dt.datetime, exit_status: int | None = None) -> None:
    Ping.objects.create(service_id=service.ping_uuid, kind=kind, received_at=at, exit_status=exit_status)


def judge(service: Service, now: dt.datetime) -> Any:
    with time_machine.travel(now, tick=False):
        return PushProbe(service.settings, timeout=1, service_name=service.name).run()


@pytest.mark.django_db
def test_it_is_up_after_a_success_on_time_and_down_once_late():
    service = push()
    ping(service, "success", T0)
    on_time = judge(service, T0 + dt.timedelta(seconds=3600 + 59))
    assert on_time.status == UP
    assert "next expected by 2026-06-01 13:01:00 UTC" in on_time.detail
    late = judge(service, T0 + dt.timedelta(seconds=3600 + 61))
    assert late.status == DOWN
    assert late.detail == "no ping since 2026-06-01 12:00:00 UTC, expected by 2026-06-01 13:01:00 UTC"


@pytest.mark.django_db
def test_it_is_down_when_the_last_ping_reported_a_failure():
    service = push()
    ping(service, "success", T0)
    ping(service, "fail", T0 + dt.timedelta(seconds=10), exit_status=3)
    outcome = judge(service, T0 + dt.timedelta(seconds=20))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("job reported failure (exit 3)")
    ping(service, "success", T0 + dt.timedelta(seconds=30))  # a success after it resolves it
    assert judge(service, T0 + dt.timedelta(seconds=40)).status == UP


@pytest.mark.django_db
def test_it_ignores_log_pings():
    service = push()
    ping(service, "fail", T0)
    ping(service, "log", T0 + dt.timedelta(seconds=5))
    assert judge(service, T0 + dt.timedelta(seconds=10)).status == DOWN


@pytest.mark.django_db
def test_it_measures_the_run_time_and_degrades_an_overlong_run():
    service = push(period=3600, grace=60, max_runtime=100)
    ping(service, "start", T0)
    ping(service, "success", T0 + dt.timedelta(seconds=42))
    quick = judge(service, T0 + dt.timedelta(seconds=60))
    assert (quick.status, "ran 42.0 s" in quick.detail) == (UP, True)
    ping(service, "start", T0 + dt.timedelta(seconds=1000))
    ping(service, "success", T0 + dt.timedelta(seconds=1150))
    slow = judge(service, T0 + dt.timedelta(seconds=1200))
    assert slow.status == DEGRADED
    assert "ran 150.0 s, longer than max_runtime 100 s" in slow.detail


@pytest.mark.django_db
def test_it_is_down_when_a_start_has_no_end_within_max_runtime_and_grace():
    service = push(period=3600, grace=60, max_runtime=100)
    ping(service, "success", T0 - dt.timedelta(seconds=100))
    ping(service, "start", T0)
    running = judge(service, T0 + dt.timedelta(seconds=159))
    assert (running.status, running.detail) == (UP, "running since 2026-06-01 12:00:00 UTC (159.0 s)")
    stuck = judge(service, T0 + dt.timedelta(seconds=161))
    assert stuck.status == DOWN
    assert "no end within max_runtime 100 s + grace 60 s" in stuck.detail


@pytest.mark.django_db
def test_it_gives_a_new_service_one_period_and_grace_for_its_first_ping():
    with time_machine.travel(T0, tick=False):
        service = push()
    assert judge(service, T0 + dt.timedelta(seconds=3000)).status == UP
    late = judge(service, T0 + dt.timedelta(seconds=3700))
    assert (late.status, late.detail) == (DOWN, "no ping received yet, expected by 2026-06-01 13:01:00 UTC")


@pytest.mark.django_db
def test_it_reads_the_latest_pings_in_one_query_and_writes_nothing():
    service = push()
    for k in range(50):
        ping(service, "success", T0 + dt.timedelta(minutes=k))
    with CaptureQueriesContext(connection) as queries:
        assert judge(service, T0 + dt.timedelta(minutes=50)).status == UP
    assert len(queries) == 1
    assert queries[0]["sql"].lstrip().upper().startswith("SELECT")


def test_it_follows_a_cron_schedule_across_the_spring_dst_change():
    # Europe/Berlin springs forward at 02:00 local on 2026-03-29: "30 2 * * *" has no tick that day,
    # and "0 3 * * *" is 01:00 UTC that day, 02:00 UTC the day before.
    berlin = zone("Europe/Berlin")
    three = parse_cron("0 3 * * *")
    before = dt.datetime(2026, 3, 28, 2, 30, tzinfo=dt.UTC)  # 03:30 CET
    assert next_tick(three, berlin, before) == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)
    assert next_tick(three, berlin, dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)) == dt.datetime(
        2026, 3, 30, 1, 0, tzinfo=dt.UTC
    )
    assert next_tick(three, berlin, dt.datetime(2026, 3, 27, 12, 0, tzinfo=dt.UTC)) == dt.datetime(
        2026, 3, 28, 2, 0, tzinfo=dt.UTC
    )
    half_two = parse_cron("30 2 * * *")
    assert next_tick(half_two, berlin, dt.datetime(2026, 3, 28, 12, 0, tzinfo=dt.UTC)) == dt.datetime(
        2026, 3, 30, 0, 30, tzinfo=dt.UTC
    )


@pytest.mark.django_db
def test_it_judges_a_cron_job_late_by_its_local_schedule_across_the_autumn_dst_change():
    # New York falls back at 02:00 local on 2026-11-01: 03:00 EST is 08:00 UTC (07:00 UTC the day before).
    service = push(cron="0 3 * * *", timezone="America/New_York", grace=600)
    ping(service, "success", dt.datetime(2026, 10, 31, 7, 0, 30, tzinfo=dt.UTC))  # 03:00:30 EDT
    # An hour after "yesterday + 24 h" the job is not yet late: the wall clock fell back.
    assert judge(service, dt.datetime(2026, 11, 1, 8, 5, tzinfo=dt.UTC)).status == UP
    late = judge(service, dt.datetime(2026, 11, 1, 8, 11, tzinfo=dt.UTC))
    assert late.status == DOWN
    assert "expected by 2026-11-01 08:10:00 UTC" in late.detail


@pytest.mark.parametrize(
    ("settings", "where", "message"),
    [
        ({}, "service.settings.period", "exactly one"),
        ({"period": 60, "cron": "* * * * *"}, "service.settings.period", "exactly one"),
        ({"period": 0}, "service.settings.period", "positive"),
        ({"period": 60, "timezone": "UTC"}, "service.settings.timezone", "goes with cron"),
        ({"cron": "0 3 * *"}, "service.settings.cron", "five fields"),
        ({"cron": "0 3 31 2 *"}, "service.settings.cron", "never fires"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "service.settings.timezone", "unknown time zone"),
        ({"period": 60, "grace": 0}, "service.settings.grace", "positive"),
    ],
)
def test_it_names_the_bad_key(settings: dict[str, Any], where: str, message: str):
    with pytest.raises(ConfigError) as caught:
        PushProbe.validate_settings(settings, "service.settings")
    assert caught.value.where == where
    assert message in caught.value.message


def test_it_reads_a_bad_schedule_as_misconfigured():
    with pytest.raises(ProbeConfigError, match="exactly one"):
        PushProbe({"grace": 5}, timeout=1, service_name="x").run()


@pytest.mark.django_db(transaction=True)  # the probe runs in a worker thread, on its own connection
def test_it_evaluates_a_push_service_now_with_runprobes(settings):
    settings.AUTO_RECOVERY_ENABLED = False
    service = push()
    Service.objects.filter(pk=service.pk).update(failure_threshold=1)
    ping(service, "fail", dt.datetime.now(dt.UTC), exit_status=2)
    with pytest.raises(SystemExit):
        call_command("runprobes", service.name)
    service.refresh_from_db()
    assert service.status == DOWN
    assert service.last_detail.startswith("job reported failure (exit 2)")
    assert service.results.get().status == DOWN


PUSH_TOML = """
[[service]]
name = "nightly-backup"
kind = "push"
cron = "0 3 * * *"
timezone = "Europe/Berlin"
grace = {grace}
"""


@pytest.mark.django_db
def test_it_keeps_the_ping_uuid_across_a_re_import_and_exports_it(tmp_path):
    config = tmp_path / "portal.toml"
    config.write_text(PUSH_TOML.format(grace=600))
    call_command("importconfig", str(config))
    first = Service.objects.get(name="nightly-backup")
    assert first.settings == {"cron": "0 3 * * *", "timezone": "Europe/Berlin", "grace": 600}
    config.write_text(PUSH_TOML.format(grace=900))
    call_command("importconfig", str(config))
    again = Service.objects.get(name="nightly-backup")
    assert again.settings["grace"] == 900
    assert again.ping_uuid == first.ping_uuid
    out = io.StringIO()
    call_command("exportconfig", stdout=out)
    text = out.getvalue()
    exported = tmp_path / "exported.toml"
    exported.write_text(text)
    assert "nightly-backup" in text and f'ping_uuid = "{first.ping_uuid}"' in text
    Service.objects.all().delete()  # a new portal: the exported file brings the uuid, so cron lines keep working
    call_command("importconfig", str(exported))
    assert Service.objects.get(name="nightly-backup").ping_uuid == first.ping_uuid


@pytest.mark.django_db
def test_it_refuses_a_bad_push_schedule_by_name_at_import(tmp_path):
    config = tmp_path / "portal.toml"
    config.write_text(PUSH_TOML.format(grace=600).replace('"0 3 * * *"', '"0 25 * * *"'))
    with pytest.raises(CommandError, match=r"service\[0\]\.cron: hour field '25' must lie within 0-23"):
        call_command("importconfig", str(config))


@pytest.mark.django_db
def test_it_prints_the_whole_ping_url_from_public_url(settings, capsys):
    settings.PUBLIC_URL = "https://ops.example.org/"
    service = push()
    call_command("pingurl", service.name)
    assert capsys.readouterr().out.strip() == f"https://ops.example.org/ping/{service.ping_uuid}"
    make_service("web")
    with pytest.raises(CommandError, match="web is a tcp service, not push"):
        call_command("pingurl", "web")
    with pytest.raises(CommandError, match="unknown service: nope"):
        call_command("pingurl", "nope")


@pytest.mark.django_db
def test_it_gives_each_service_its_own_ping_uuid():
    uuids = {push(f"job-{k}").ping_uuid for k in range(5)}
    assert len(uuids) == 5
