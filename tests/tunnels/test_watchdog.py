from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
import requests
import time_machine
from django.utils import timezone

from health.models import Event
from tests.servers import Reply, wait_for
from tests.tunnels.conftest import assert_clean, connector_pids, zombie_children
from tunnels import watchdog
from tunnels.models import Tunnel, TunnelEvent

pytestmark = pytest.mark.django_db

Kind = TunnelEvent.Kind


def kinds(tunnel: Tunnel) -> list[str]:
    return list(tunnel.events.order_by("created_at", "pk").values_list("kind", flat=True))


def ready_connections(port: int) -> int:
    return requests.get(f"http://127.0.0.1:{port}/ready", timeout=5).json()["readyConnections"]


def test_it_starts_a_missing_connector_and_records_its_pid(make_tunnel):
    fake = make_tunnel()
    result = watchdog.check_now(fake.tunnel)
    tunnel = fake.reload()
    assert result.events == [Kind.PROCESS_MISSING, Kind.RESTARTED]
    assert tunnel.status == Tunnel.Status.UP
    assert tunnel.pid == result.pid and psutil.pid_exists(tunnel.pid)
    assert tunnel.pid_create_time == psutil.Process(tunnel.pid).create_time()
    assert tunnel.ready_connections == 4 and tunnel.last_restart_at is not None
    assert ready_connections(fake.port) == 4
    restarted = tunnel.events.get(kind=Kind.RESTARTED)
    assert restarted.pid == tunnel.pid and "readyConnections 4" in restarted.detail
    assert Event.objects.filter(kind=Event.Kind.TUNNEL_RESTARTED, subject="edge").count() == 1
    assert "Starting fake tunnel" in Path(tunnel.log_file).read_text()  # output appended to the log file
    assert_clean(fake)


def test_it_records_a_healthy_check_without_restarting(make_tunnel):
    fake = make_tunnel()
    pid = fake.start()
    result = watchdog.check_now(fake.reload())
    assert result.events == [Kind.CHECK_OK]
    assert result.status == Tunnel.Status.UP and result.pid == pid
    assert fake.reload().events.filter(kind=Kind.CHECK_OK, pid=pid).count() == 1
    assert_clean(fake)


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow("kills and restarts a fake connector")
def test_it_restarts_a_killed_connector_with_a_new_pid(make_tunnel):
    fake = make_tunnel()
    old = fake.start()
    os.kill(old, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: check once the kernel has ended it (a zombie counts as dead).
    assert wait_for(lambda: ended(old))
    result = watchdog.check_now(fake.reload())
    tunnel = fake.reload()
    assert result.events == [Kind.PROCESS_MISSING, Kind.RESTARTED]
    assert tunnel.pid != old and psutil.Process(tunnel.pid).is_running()
    assert tunnel.status == Tunnel.Status.UP and ready_connections(fake.port) == 4
    assert tunnel.events.filter(kind=Kind.RESTARTED).first().pid == tunnel.pid
    # The killed connector was our child: reaped, not left a zombie.
    assert not psutil.pid_exists(old) or psutil.Process(old).status() != psutil.STATUS_ZOMBIE
    assert zombie_children(connector_pids(tunnel)) == []
    assert_clean(fake)


def test_it_adopts_a_connector_it_did_not_start_by_process_match(make_tunnel):
    fake = make_tunnel()
    pid = fake.start()
    Tunnel.objects.filter(pk=fake.tunnel.pk).update(pid=None, pid_create_time=None)
    result = watchdog.check_now(fake.reload())
    assert result.events == [Kind.CHECK_OK] and fake.reload().pid == pid
    assert_clean(fake)


@pytest.mark.slow("a fake connector unready for the threshold")
def test_it_restarts_a_connector_that_stays_unready_for_the_threshold(make_tunnel):
    fake = make_tunnel(ready_failure_threshold=2)
    old = fake.start()
    fake.control.write_text(str(old))  # only this connector answers 503; the next one is healthy
    first = watchdog.check_now(fake.reload())
    assert first.events == [Kind.NOT_READY] and first.status == Tunnel.Status.NOT_READY
    tunnel = fake.reload()
    assert tunnel.pid == old and tunnel.consecutive_ready_failures == 1 and tunnel.ready_connections == 0
    assert "1/2" in tunnel.events.get(kind=Kind.NOT_READY).detail

    second = watchdog.check_now(fake.reload())
    tunnel = fake.reload()
    assert second.events == [Kind.NOT_READY, Kind.RESTARTED]
    assert tunnel.pid != old and not psutil.pid_exists(old)  # stopped gracefully, reaped
    assert tunnel.status == Tunnel.Status.UP and tunnel.consecutive_ready_failures == 0
    assert ready_connections(fake.port) == 4
    assert_clean(fake)


@pytest.mark.slow("a fake connector that recovers")
def test_it_resets_the_ready_failure_count_when_the_connector_recovers(make_tunnel):
    fake = make_tunnel(ready_failure_threshold=2)
    pid = fake.start()
    fake.control.write_text("")
    watchdog.check_now(fake.reload())
    fake.control.unlink()
    watchdog.check_now(fake.reload())
    fake.control.write_text("")
    result = watchdog.check_now(fake.reload())
    assert result.events == [Kind.NOT_READY] and fake.reload().pid == pid  # 1/2 again, no restart
    assert kinds(fake.tunnel).count(Kind.RESTARTED) == 1
    assert_clean(fake)


@pytest.mark.slow("waits out the public URL check's timeout")
def test_it_reports_an_unreachable_public_site_without_restarting(make_tunnel, http_server):
    fake = make_tunnel(public_url=http_server.url + "/")
    pid = fake.start()
    http_server.reply = Reply(302, "", headers={"Location": "/login"})
    assert watchdog.check_now(fake.reload()).events == [Kind.CHECK_OK]  # 3xx is an answer

    http_server.reply = Reply(502, "bad gateway")
    result = watchdog.check_now(fake.reload())
    tunnel = fake.reload()
    assert result.events == [Kind.ORIGIN_UNREACHABLE]
    assert tunnel.pid == pid and tunnel.status == Tunnel.Status.UP
    assert "HTTP 502" in tunnel.events.get(kind=Kind.ORIGIN_UNREACHABLE).detail
    assert tunnel.last_detail.startswith("origin unreachable")
    assert kinds(tunnel).count(Kind.RESTARTED) == 1  # only the first start
    assert_clean(fake)


@pytest.mark.slow("restarts a crash-looping fake connector up to the limit")
def test_it_stops_restarting_a_crash_loop_after_max_restarts_per_hour(make_tunnel):
    fake = make_tunnel("--exit-at-once", max_restarts_per_hour=5, settle_seconds=0.3)
    results = [watchdog.check_now(fake.reload()) for _ in range(8)]
    tunnel = fake.reload()
    assert kinds(tunnel).count(Kind.RESTART_FAILED) == 5
    assert kinds(tunnel).count(Kind.RESTARTED) == 0
    assert kinds(tunnel).count(Kind.RESTART_SUPPRESSED) == 1  # told once, not on every check
    assert [r.status for r in results[5:]] == [Tunnel.Status.SUPPRESSED] * 3
    assert "5 restarts in the last hour (max 5)" in tunnel.last_detail
    assert Event.objects.filter(kind=Event.Kind.TUNNEL_RESTART_SUPPRESSED, subject="edge").count() == 1
    assert "failed to connect to the edge" in Path(tunnel.log_file).read_text()
    # Every crashed connector was reaped.
    assert fake.processes() == [] and zombie_children(connector_pids(tunnel)) == []
    assert_clean(fake)


@pytest.mark.slow("restarts a fake connector several times")
def test_it_counts_restarts_in_a_rolling_hour(make_tunnel):
    fake = make_tunnel("--exit-at-once", max_restarts_per_hour=2, settle_seconds=0.2)
    start = timezone.now()
    with time_machine.travel(start, tick=True):
        watchdog.check_now(fake.reload())
    with time_machine.travel(start + timedelta(minutes=20), tick=True):
        watchdog.check_now(fake.reload())
    with time_machine.travel(start + timedelta(minutes=40), tick=True):
        assert watchdog.check_now(fake.reload()).status == Tunnel.Status.SUPPRESSED
    with time_machine.travel(start + timedelta(minutes=50), tick=True):
        watchdog.check_now(fake.reload())
        assert fake.reload().events.filter(kind=Kind.RESTART_SUPPRESSED).count() == 1
    # 61 minutes after the first attempt one slot is free again; 81 minutes after, two.
    with time_machine.travel(start + timedelta(minutes=61), tick=True):
        result = watchdog.check_now(fake.reload())
        assert Kind.RESTART_FAILED in result.events
    with time_machine.travel(start + timedelta(minutes=62), tick=True):
        assert watchdog.check_now(fake.reload()).status == Tunnel.Status.SUPPRESSED
    # The notice repeats once the previous one is an hour old.
    assert fake.reload().events.filter(kind=Kind.RESTART_SUPPRESSED).count() == 1
    with time_machine.travel(start + timedelta(minutes=101), tick=True):
        assert Kind.RESTART_FAILED in watchdog.check_now(fake.reload()).events  # the 20-minute one expired
    with time_machine.travel(start + timedelta(minutes=102), tick=True):
        assert watchdog.check_now(fake.reload()).status == Tunnel.Status.SUPPRESSED
        assert fake.reload().events.filter(kind=Kind.RESTART_SUPPRESSED).count() == 2
    assert_clean(fake)


@pytest.mark.slow("starts a fake connector")
def test_it_honours_the_limit_recorded_by_earlier_processes(make_tunnel):
    fake = make_tunnel(max_restarts_per_hour=3)
    earlier = timezone.now() - timedelta(minutes=50)
    for _ in range(3):
        TunnelEvent.objects.create(tunnel=fake.tunnel, kind=Kind.RESTARTED, created_at=earlier, pid=1)
    result = watchdog.check_now(fake.reload())
    assert result.status == Tunnel.Status.SUPPRESSED and fake.processes() == []  # nothing was started
    TunnelEvent.objects.filter(tunnel=fake.tunnel).update(created_at=timezone.now() - timedelta(minutes=61))
    assert watchdog.check_now(fake.reload()).restarted
    assert_clean(fake)


@pytest.mark.slow("waits out a fake connector's readiness timeout")
def test_it_records_a_restart_that_never_becomes_ready_as_failed(make_tunnel):
    fake = make_tunnel("--never-ready", startup_timeout=2)
    result = watchdog.check_now(fake.tunnel)
    tunnel = fake.reload()
    assert result.events == [Kind.PROCESS_MISSING, Kind.RESTART_FAILED]
    failed = tunnel.events.get(kind=Kind.RESTART_FAILED)
    assert "connector not ready within 2 s" in failed.detail
    assert tunnel.status == Tunnel.Status.NOT_READY and tunnel.pid == failed.pid  # left running, tracked
    assert psutil.Process(tunnel.pid).is_running()
    assert requests.get(tunnel.ready_url, timeout=5).status_code == 503
    assert not Event.objects.filter(kind=Event.Kind.TUNNEL_RESTARTED).exists()
    assert_clean(fake)


def test_it_records_a_command_that_cannot_start(make_tunnel, tmp_path):
    fake = make_tunnel(command=[str(tmp_path / "no-such-cloudflared"), "tunnel", "run"])
    result = watchdog.check_now(fake.tunnel)
    assert result.events == [Kind.PROCESS_MISSING, Kind.RESTART_FAILED]
    assert result.status == Tunnel.Status.DOWN and "could not start the connector" in result.detail
    assert_clean(fake)


def test_it_expands_secrets_in_the_command_and_never_records_them(make_tunnel, monkeypatch):
    monkeypatch.setenv("FAKE_TUNNEL_TOKEN", "s3cr3t-token-value")
    fake = make_tunnel("--token", "${FAKE_TUNNEL_TOKEN}")
    fake.start()
    assert "s3cr3t-token-value" in psutil.Process(fake.reload().pid).cmdline()
    assert not TunnelEvent.objects.filter(detail__contains="s3cr3t").exists()
    assert "s3cr3t" not in fake.reload().last_detail
    assert_clean(fake)


def test_it_fails_clearly_when_a_command_secret_is_not_set(make_tunnel, monkeypatch):
    monkeypatch.delenv("FAKE_TUNNEL_TOKEN", raising=False)
    fake = make_tunnel("--token", "${FAKE_TUNNEL_TOKEN}")
    result = watchdog.check_now(fake.tunnel)
    assert Kind.RESTART_FAILED in result.events
    assert "environment variable FAKE_TUNNEL_TOKEN is not set" in result.detail
    assert fake.processes() == []
    assert_clean(fake)


def test_it_checks_the_process_only_when_no_urls_are_set(make_tunnel):
    fake = make_tunnel(ready=False)
    pid = fake.start()
    result = watchdog.check_now(fake.reload())
    assert result.events == [Kind.CHECK_OK] and result.pid == pid
    assert fake.reload().ready_connections is None
    assert_clean(fake)


@pytest.mark.slow("restarts a fake connector")
def test_it_restarts_for_recovery_and_reports_the_outcome(make_tunnel):
    fake = make_tunnel()
    old = fake.start()
    ok, detail = watchdog.restart_for_recovery("edge")
    tunnel = fake.reload()
    assert ok and "requested by recovery" in detail and tunnel.pid != old
    assert ready_connections(fake.port) == 4
    assert watchdog.restart_for_recovery("nope") == (False, "unknown tunnel 'nope'")
    assert_clean(fake)


@pytest.mark.slow("restarts a fake connector up to the limit")
def test_it_refuses_a_recovery_restart_past_the_limit_or_while_claimed(make_tunnel, monkeypatch):
    fake = make_tunnel(max_restarts_per_hour=1)
    fake.start()
    ok, detail = watchdog.restart_for_recovery("edge")
    assert not ok and "restart suppressed" in detail

    monkeypatch.setattr(watchdog, "RECOVERY_CLAIM_WAIT", 0.3)
    Tunnel.objects.filter(pk=fake.tunnel.pk).update(running_since=timezone.now())
    ok, detail = watchdog.restart_for_recovery("edge")
    assert not ok and "being checked by another watchdog" in detail
    Tunnel.objects.filter(pk=fake.tunnel.pk).update(enabled=False, running_since=None)
    assert watchdog.restart_for_recovery("edge") == (False, "tunnel edge is disabled")
    assert_clean(fake)
