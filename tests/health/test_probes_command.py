"""The `command` probe with real argv scripts: the Nagios plugin convention."""

from __future__ import annotations

import sys
import time

import psutil
import pytest

from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError
from health.probes.command import CommandProbe
from health.runner import probe_once
from tests.factories import ServiceFactory
from tests.servers import wait_for

pytestmark = pytest.mark.django_db


def script(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def command_service(argv: list[str], timeout: float = 10.0, degraded_latency_ms: int = 5000, **settings):
    return ServiceFactory.build(
        kind="command", settings={"argv": argv, **settings}, timeout=timeout, degraded_latency_ms=degraded_latency_ms
    )


def test_it_is_up_on_exit_0_with_the_first_line_as_detail():
    outcome = probe_once(command_service(script("print('OK - 3 queues empty'); print('second line')")))
    assert outcome.status == UP
    assert outcome.detail == "OK - 3 queues empty"


def test_it_is_degraded_on_exit_1():
    outcome = probe_once(command_service(script("import sys; print('WARNING - disk 85%'); sys.exit(1)")))
    assert outcome.status == DEGRADED
    assert outcome.detail == "WARNING - disk 85%"


@pytest.mark.parametrize("code", [2, 3, 127])
def test_it_is_down_on_exit_2_or_anything_else(code):
    outcome = probe_once(command_service(script(f"import sys; print('CRITICAL - gone'); sys.exit({code})")))
    assert outcome.status == DOWN
    assert outcome.detail == f"exit {code}: CRITICAL - gone"


def test_it_uses_stderr_when_stdout_is_empty_and_the_exit_code_when_both_are():
    err = probe_once(command_service(script("import sys; sys.stderr.write('boom on stderr\\n'); sys.exit(2)")))
    assert err.detail == "exit 2: boom on stderr"
    silent = probe_once(command_service(script("pass")))
    assert silent.status == UP
    assert silent.detail == "exit 0"


def test_it_is_degraded_when_slower_than_degraded_latency():
    outcome = probe_once(command_service(script("import time; time.sleep(0.3)"), degraded_latency_ms=100))
    assert outcome.status == DEGRADED
    assert outcome.detail.startswith("slow: ")


@pytest.mark.slow("waits out the timeout")
def test_it_kills_the_command_and_its_children_on_timeout(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    outcome = probe_once(command_service(script(code), timeout=1))
    elapsed = time.monotonic() - start
    assert outcome.status == DOWN
    assert outcome.detail == "command did not finish within 1 s"
    assert elapsed < 10
    grandchild = int(pid_file.read_text())

    def gone() -> bool:
        try:
            return psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    assert wait_for(gone, timeout=5)


def test_it_expands_env_values_and_never_shows_the_secret(monkeypatch):
    secret = "cmd-secret-0987654321"
    monkeypatch.setenv("OPS_TEST_CMD_SECRET", secret)
    outcome = probe_once(
        command_service(
            script("import os; print('token is', os.environ['CHECK_TOKEN'])"),
            env={"CHECK_TOKEN": "${OPS_TEST_CMD_SECRET}"},
        )
    )
    assert outcome.status == UP
    assert outcome.detail == "token is ***"


def test_it_never_uses_a_shell():
    outcome = probe_once(command_service(["echo hello; exit 0"]))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("cannot run echo hello; exit 0:")


def test_it_is_down_when_the_program_does_not_exist():
    outcome = probe_once(command_service(["/nonexistent/check_thing", "-w", "1"]))
    assert outcome.status == DOWN
    assert outcome.detail == "cannot run /nonexistent/check_thing: No such file or directory"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, r"settings\.argv: is required"),
        ({"argv": "check_disk -w 10"}, r"settings\.argv: must be a non-empty list of strings"),
        ({"argv": []}, r"settings\.argv: must be a non-empty list of strings"),
        ({"argv": ["true"], "env": {"A": 1}}, r"settings\.env: must be a table of strings"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ProbeConfigError, match=message):
        CommandProbe(settings, timeout=1)
    outcome = probe_once(ServiceFactory.build(kind="command", settings=settings))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error: settings.")


def test_it_names_an_unset_env_variable(monkeypatch):
    monkeypatch.delenv("OPS_TEST_CMD_UNSET", raising=False)
    outcome = probe_once(command_service(["true"], env={"X": "${OPS_TEST_CMD_UNSET}"}))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error: environment variable OPS_TEST_CMD_UNSET is not set" + "; fix: ")


@pytest.mark.slow("waits out the timeout a descendant process outlives")
def test_it_is_not_held_by_a_descendant_that_left_the_group(tmp_path):
    # A grandchild in its own session survives the group kill and keeps stdout open.
    pid_file = tmp_path / "escaped.pid"
    code = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    start = time.monotonic()
    try:
        outcome = probe_once(command_service(script(code), timeout=1))
        elapsed = time.monotonic() - start
    finally:
        if pid_file.exists():
            escaped = psutil.Process(int(pid_file.read_text()))
            escaped.kill()
            escaped.wait(timeout=10)
    assert outcome.status == DOWN
    assert outcome.detail == "command did not finish within 1 s"
    assert elapsed < 10


def test_it_gives_the_plugin_a_minimal_environment_and_what_env_passthrough_names(monkeypatch):
    monkeypatch.setenv("OTHER_SERVICE_SECRET", "other-service-secret-value")
    monkeypatch.setenv("PLUGIN_CONF", "/etc/plugin.conf")
    names = ["OTHER_SERVICE_SECRET", "PATH", "PLUGIN_CONF"]
    code = "import json, os, sys; print(json.dumps(sorted(k for k in sys.argv[1:] if k in os.environ)))"
    plain = probe_once(command_service(script(code) + names))
    assert plain.status == UP and plain.detail == '["PATH"]'
    passed = probe_once(command_service(script(code) + names, env_passthrough=["PLUGIN_CONF"]))
    assert passed.status == UP and passed.detail == '["PATH", "PLUGIN_CONF"]'


def test_it_refuses_env_passthrough_of_the_portal_s_own_secrets():
    outcome = probe_once(command_service(script("print('x')"), env_passthrough=["SECRET_KEY"]))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error") and "SECRET_KEY" in outcome.detail
