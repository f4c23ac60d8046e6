"""The runner: concurrent probes, bulk writes, hung probes, secrets kept out of every record."""

from __future__ import annotations

import logging
import sys
import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dispatch import rounds
from health import runner
from health.models import ProbeResult, Service
from health.probes import registry
from health.probes.base import DOWN, UP, Probe, ProbeOutcome
from health.runner import record, run_probes, select_services
from tests.factories import ServiceFactory
from tests.servers import Reply, free_port

pytestmark = pytest.mark.django_db


def http(server, path: str, name: str, **kw) -> Service:
    return ServiceFactory(name=name, kind="http", settings={"url": server.url + path}, **kw)


@pytest.mark.slow("ten targets that each answer slowly")
def test_it_probes_ten_slow_targets_concurrently(make_http_server):
    servers = [make_http_server() for _ in range(10)]
    for server in servers:
        server.reply = Reply(delay=1.0)
    services = [http(server, "/", f"slow-{i}", timeout=5) for i, server in enumerate(servers)]
    start = time.monotonic()
    outcomes = run_probes(services)
    elapsed = time.monotonic() - start
    assert elapsed < 3, f"10 targets of 1 s each took {elapsed:.1f} s"
    assert {o.status for o in outcomes.values()} == {UP}
    assert all(o.latency_ms >= 1000 for o in outcomes.values())
    assert all(len(server.requests) == 1 for server in servers)


@pytest.mark.slow("a target that hangs for its whole timeout")
def test_it_does_not_let_a_hanging_target_delay_the_others(make_http_server):
    hanging, fast = make_http_server(), make_http_server()
    hanging.reply = Reply(hang=True)
    services = [http(hanging, "/", "hangs", timeout=1), http(fast, "/", "fast", timeout=1)]
    start = time.monotonic()
    outcomes = run_probes(services)
    assert time.monotonic() - start < 4
    assert outcomes["fast"].status == UP
    assert outcomes["hangs"].status == DOWN
    assert outcomes["hangs"].detail == "no answer within 1 s"


class StuckProbe(Probe):
    """A probe that ignores its timeout (a bug in a probe, or a library call that blocks)."""

    release = threading.Event()
    keys = {}

    def run(self) -> ProbeOutcome:
        self.release.wait(30)
        return ProbeOutcome(UP, 1.0, "finally")


@pytest.mark.slow("a probe that runs past its timeout")
def test_it_reports_a_probe_that_ignores_its_timeout_as_hung(monkeypatch, tcp_server):
    monkeypatch.setitem(registry._load(), "stuck", StuckProbe)
    monkeypatch.setattr(runner, "GRACE_SECONDS", 0.3)
    stuck = ServiceFactory.build(name="stuck", kind="stuck", settings={}, timeout=0.5)
    ok = ServiceFactory.build(name="ok", settings={"host": "127.0.0.1", "port": tcp_server.port}, timeout=0.5)
    start = time.monotonic()
    try:
        outcomes = run_probes([stuck, ok])
        elapsed = time.monotonic() - start
    finally:
        StuckProbe.release.set()
    assert elapsed < 3
    assert outcomes["stuck"].status == DOWN
    assert outcomes["stuck"].detail == "probe did not finish within 0.5 s (hung)"
    assert outcomes["ok"].status == UP


def test_it_turns_a_crashing_probe_into_down_without_stopping_the_round(monkeypatch, tcp_server):
    class CrashingProbe(Probe):
        keys = {}

        def run(self) -> ProbeOutcome:
            raise ZeroDivisionError("bug")

    monkeypatch.setitem(registry._load(), "crashing", CrashingProbe)
    crash = ServiceFactory.build(name="crash", kind="crashing", settings={})
    ok = ServiceFactory.build(name="ok", settings={"host": "127.0.0.1", "port": tcp_server.port})
    outcomes = run_probes([crash, ok])
    assert outcomes["crash"] == ProbeOutcome(DOWN, None, "internal error: ZeroDivisionError")
    assert outcomes["ok"].status == UP


def test_it_reports_an_unknown_kind_as_a_config_error():
    outcome = runner.probe_once(ServiceFactory.build(kind="gopher", settings={}))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error: unknown kind 'gopher'" + "; fix: ")


def _round_queries(count: int) -> int:
    services = [ServiceFactory(failure_threshold=1) for _ in range(count)]
    outcomes = {s.name: ProbeOutcome(DOWN, None, "refused") for s in services}
    with CaptureQueriesContext(connection) as ctx:
        record(services, outcomes, timezone.now())  # HARD down: results, changes, incidents, events
    with CaptureQueriesContext(connection) as still:
        record(services, {s.name: ProbeOutcome(DOWN, None, "still refused") for s in services}, timezone.now())
    with CaptureQueriesContext(connection) as back:
        record(services, {s.name: ProbeOutcome(UP, 1.0, "ok") for s in services}, timezone.now())
    return len(ctx), len(still), len(back)


def test_it_writes_a_round_in_a_constant_number_of_queries():
    small = _round_queries(3)
    large = _round_queries(15)
    assert small == large, f"queries grow with services: {small} vs {large}"
    assert ProbeResult.objects.count() == 3 * 3 + 15 * 3


def test_it_records_a_round_and_answers_the_overall_status(http_server, settings):
    settings.AUTO_RECOVERY_ENABLED = False
    http(http_server, "/", "web")
    ServiceFactory(name="cache", settings={"host": "127.0.0.1", "port": free_port()}, critical=False)
    ServiceFactory(name="off", enabled=False)
    result = rounds.run()
    assert [s.name for s in result.services] == ["cache", "web"]  # disabled services are not probed
    assert result.status == "degraded"  # a non-critical service is down (SOFT)
    assert result.exit_code == 1
    assert ProbeResult.objects.filter(service__name="web", status=UP).count() == 1
    assert ProbeResult.objects.filter(service__name="cache", status=DOWN).count() == 1
    assert not ProbeResult.objects.filter(service__name="off").exists()
    web = Service.objects.get(name="web")
    assert web.status == UP and web.last_checked_at is not None
    shape = result.as_dict()
    assert set(shape) == {"status", "timestamp", "services"}
    assert set(shape["services"]["web"]) >= {"kind", "status", "critical", "latencyMs", "lastCheckedAt", "detail"}


def test_it_answers_down_for_a_critical_hard_down_service(settings):
    settings.AUTO_RECOVERY_ENABLED = False
    ServiceFactory(name="db", settings={"host": "127.0.0.1", "port": free_port()}, failure_threshold=1)
    result = rounds.run()
    assert (result.status, result.exit_code) == (DOWN, 2)


def test_it_keeps_secrets_out_of_results_state_and_logs(monkeypatch, caplog, settings):
    settings.AUTO_RECOVERY_ENABLED = False
    secret = "s3cr3t-token-5551212"
    monkeypatch.setenv("OPS_TEST_RUNNER_SECRET", secret)
    ServiceFactory(
        name="leaky",
        kind="command",
        settings={
            "argv": [sys.executable, "-c", "import os, sys; print('auth', os.environ['T'], 'refused'); sys.exit(2)"],
            "env": {"T": "${OPS_TEST_RUNNER_SECRET}"},
        },
        failure_threshold=1,
    )
    with caplog.at_level(logging.DEBUG, logger="opsportal"):
        result = rounds.run()
    service = Service.objects.get(name="leaky")
    assert service.status == DOWN
    assert service.last_detail == "exit 2: auth *** refused"
    assert secret not in service.last_error
    assert secret not in ProbeResult.objects.get(service=service).detail
    assert secret not in service.incidents.get().cause
    assert secret not in str(result.as_dict())
    assert "auth *** refused" in caplog.text  # the transition was logged, scrubbed
    assert secret not in caplog.text


def test_it_selects_named_services_and_refuses_unknown_names():
    ServiceFactory(name="a")
    ServiceFactory(name="b", enabled=False)
    assert [s.name for s in select_services(["b", "a", "b"])] == ["b", "a"]  # disabled ones may be named
    with pytest.raises(Service.DoesNotExist, match="unknown service: nope, nada"):
        select_services(["a", "nope", "nada"])
    assert [s.name for s in select_services()] == ["a"]
