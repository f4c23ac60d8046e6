"""`manage.py runprobes`: Nagios exit codes, the table, --json, unknown names, --loop."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from dispatch.management.commands.runprobes import Command
from health.models import ProbeResult
from recovery.models import RecoveryAttempt
from tests.factories import RecoveryActionFactory, ServiceFactory
from tests.servers import free_port

pytestmark = pytest.mark.django_db

BASE_DIR = Path(django_settings.BASE_DIR)


def runprobes(*args: str, command: object = "runprobes") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exc:
        call_command(command, *args, stdout=out, stderr=err)
    return exc.value.code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def no_auto_recovery(settings):
    settings.AUTO_RECOVERY_ENABLED = False


def up_service(tcp_server, name: str = "up", **kw):
    return ServiceFactory(name=name, settings={"host": "127.0.0.1", "port": tcp_server.port}, **kw)


def down_service(name: str = "down", **kw):
    return ServiceFactory(name=name, settings={"host": "127.0.0.1", "port": free_port()}, **kw)


def test_it_exits_0_and_prints_a_table_when_healthy(tcp_server):
    up_service(tcp_server)
    code, out, _ = runprobes()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["SERVICE", "KIND", "STATUS", "LATENCY", "DETAIL"]
    assert lines[1].split()[:4] == ["up", "tcp", "OK", "up"]
    assert lines[-1].startswith("overall: healthy (1 services, ")


def test_it_exits_1_when_degraded(tcp_server):
    up_service(tcp_server)
    down_service(critical=False, failure_threshold=1)
    code, out, _ = runprobes()
    assert code == 1
    assert "DOWN down (hard)" in out
    assert "overall: degraded" in out


def test_it_exits_1_while_a_critical_failure_is_still_soft(tcp_server):
    down_service(failure_threshold=2)
    code, out, _ = runprobes()
    assert code == 1
    assert "DOWN down (soft)" in out
    code, _, _ = runprobes()
    assert code == 2


def test_it_exits_2_when_a_critical_service_is_hard_down(tcp_server):
    up_service(tcp_server)
    down_service(failure_threshold=1)
    code, out, _ = runprobes()
    assert code == 2
    assert "overall: down" in out


def test_it_exits_1_when_a_critical_service_is_misconfigured(tcp_server, monkeypatch):
    # A configuration error is no outage (issue 15 item 13): degraded, never down, however often it repeats.
    monkeypatch.delenv("RUNPROBES_UNSET_DSN", raising=False)
    up_service(tcp_server)
    ServiceFactory(name="pg", kind="postgres", settings={"dsn_env": "RUNPROBES_UNSET_DSN"}, failure_threshold=1)
    for _ in range(2):
        code, out, _ = runprobes()
        assert code == 1
    assert "CONFIG misconfigured" in out
    assert "set RUNPROBES_UNSET_DSN in the environment or .env" in out
    assert "overall: degraded" in out


def test_it_prints_the_status_shape_as_json(tcp_server):
    up_service(tcp_server)
    down_service(critical=False, failure_threshold=1)
    code, out, _ = runprobes("--json")
    doc = json.loads(out)
    assert code == 1
    assert set(doc) == {"status", "timestamp", "services"}
    assert doc["status"] == "degraded"
    assert set(doc["services"]) == {"up", "down"}
    up = doc["services"]["up"]
    assert {"kind", "status", "critical", "latencyMs", "lastCheckedAt", "consecutiveFailures", "detail"} <= set(up)
    assert (up["kind"], up["status"], up["critical"]) == ("tcp", "up", True)
    assert doc["services"]["down"]["consecutiveFailures"] == 1
    assert doc["services"]["down"]["detail"].startswith("connect to 127.0.0.1:")


def test_it_probes_only_the_named_services(tcp_server):
    up_service(tcp_server)
    down_service(failure_threshold=1)
    code, out, _ = runprobes("up")
    assert code == 0  # answers for the named service alone, like a Nagios check
    assert ProbeResult.objects.filter(service__name="down").count() == 0


def test_it_refuses_an_unknown_name_with_exit_2_and_runs_nothing(tcp_server):
    up_service(tcp_server)
    code, out, err = runprobes("up", "nosuch")
    assert code == 2
    assert err.strip() == "error: unknown service: nosuch"
    assert out == ""
    assert not ProbeResult.objects.exists()


def test_it_refuses_a_non_positive_interval(tcp_server):
    up_service(tcp_server)
    code, _, err = runprobes("--loop", "--interval", "0")
    assert code == 2
    assert "--interval must be positive" in err
    assert not ProbeResult.objects.exists()


class TwoRounds(Command):
    """runprobes whose third round is a Ctrl-C."""

    calls = 0

    def round(self, services, *, recover):
        TwoRounds.calls += 1
        if TwoRounds.calls == 3:
            raise KeyboardInterrupt
        return super().round(services, recover=recover)


def test_it_loops_until_interrupted_and_exits_with_the_last_status(tcp_server):
    up_service(tcp_server)
    TwoRounds.calls = 0
    code, out, _ = runprobes("--loop", "--interval", "0.01", command=TwoRounds())
    assert code == 0
    assert TwoRounds.calls == 3
    assert ProbeResult.objects.count() == 2
    assert out.count("overall: healthy") == 2


def test_it_picks_up_new_services_between_loop_rounds(tcp_server):
    up_service(tcp_server)

    class AddsOne(Command):
        calls = 0

        def round(self, services, *, recover):
            AddsOne.calls += 1
            if AddsOne.calls == 1:
                down_service(failure_threshold=1)
            if AddsOne.calls == 3:
                raise KeyboardInterrupt
            return super().round(services, recover=recover)

    code, out, _ = runprobes("--loop", "--interval", "0.01", command=AddsOne())
    assert code == 2  # the second round saw the new, critical, down service
    assert ProbeResult.objects.filter(service__name="down").count() == 1


def test_it_runs_auto_recovery_unless_told_not_to(settings, tmp_path):
    settings.AUTO_RECOVERY_ENABLED = True
    marker = tmp_path / "recovered"
    service = down_service(failure_threshold=1)
    RecoveryActionFactory(
        service=service,
        kind="command",
        settings={"argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"]},
        verify_delay=0,
        cooldown=0,
    )
    code, _, _ = runprobes("--no-recover")
    assert code == 2
    assert not marker.exists()
    assert not RecoveryAttempt.objects.exists()
    runprobes()
    assert marker.exists()  # the action ran (the service stays down, so it is not verified)
    assert RecoveryAttempt.objects.filter(service=service).exists()


@pytest.fixture
def cli(tmp_path, tcp_server):
    """Run manage.py as a real process against its own SQLite file with one service configured."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "cli-test-" + "x" * 40,
        "DEBUG": "false",
        "AUTO_RECOVERY_ENABLED": "false",
    }
    config = tmp_path / "one.toml"
    config.write_text(f'[[service]]\nname = "echo"\nkind = "tcp"\nhost = "127.0.0.1"\nport = {tcp_server.port}\n')

    def manage(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **kw,
        )

    assert manage("migrate", "-v0").returncode == 0
    assert manage("importconfig", str(config)).returncode == 0
    manage.env = env  # type: ignore[attr-defined]
    return manage


@pytest.mark.system
def test_it_exits_with_nagios_codes_as_a_real_process(cli):
    ok = cli("runprobes", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["services"]["echo"]["status"] == "up"
    unknown = cli("runprobes", "nosuch")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: unknown service: nosuch"
    assert "Traceback" not in unknown.stderr


@pytest.mark.system
def test_it_loops_until_sigint_as_a_real_process(cli):
    child = subprocess.Popen(
        [sys.executable, "manage.py", "runprobes", "--loop", "--interval", "0.2"],
        cwd=BASE_DIR,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        rounds = 0
        for line in child.stdout:
            rounds += line.startswith("overall: healthy")
            if rounds == 2:
                break
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert rounds == 2
    assert child.returncode == 0
    assert "Traceback" not in err
