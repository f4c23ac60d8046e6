from __future__ import annotations

import contextlib
import time

import psutil
import pytest

from health.models import Service
from recovery.actions import ActionError
from recovery.actions.command import CommandAction
from tests.recovery.conftest import PY


def action(settings: dict, timeout: float = 5) -> CommandAction:
    return CommandAction(settings, service=Service(name="svc", kind="http"), timeout=timeout)


def test_it_reports_the_exit_code_and_the_last_lines_of_output():
    # Flushed by hand: the child's environment is minimal (no inherited PYTHONUNBUFFERED), so stdout is buffered.
    script = (
        "import sys\nfor i in range(50): print('line', i)\nsys.stdout.flush(); sys.stderr.write('oops\\n'); sys.exit(4)"
    )
    result = action({"argv": [PY, "-c", script]}).run()
    assert result.ok is False and result.exit_code == 4
    assert result.detail.startswith("exit 4; output: ")
    assert "line 49" in result.detail and "oops" in result.detail
    assert "line 10\n" not in result.detail  # only the tail is kept


def test_it_runs_an_argv_never_a_shell(tmp_path):
    target = tmp_path / "x; touch pwned"
    result = action({"argv": [PY, "-c", "import sys; open(sys.argv[1], 'w')", str(target)]}).run()
    assert result.ok is True and target.exists()
    assert not (tmp_path / "pwned").exists()


def test_it_passes_the_service_name_and_the_configured_environment(monkeypatch):
    monkeypatch.setenv("OPS_CMD_SECRET", "hunter2-very-secret")
    script = "import os; print(os.environ['OPSPORTAL_SERVICE'], os.environ['PLAIN'], os.environ['TOKEN'])"
    result = action({"argv": [PY, "-c", script], "env": {"PLAIN": "hello", "TOKEN": "${OPS_CMD_SECRET}"}}).run()
    assert result.ok is True
    assert result.detail == "exit 0; output: svc hello ***"


@pytest.mark.slow("waits out the timeout")
def test_it_kills_a_command_that_runs_past_its_timeout():
    started = time.monotonic()
    with pytest.raises(ActionError, match="did not finish within 0.5 s"):
        action({"argv": [PY, "-c", "import time; print('working', flush=True); time.sleep(30)"]}, timeout=0.5).run()
    assert time.monotonic() - started < 10  # generous: the timeout, not the 30 s sleep


def test_it_names_a_missing_program_and_a_missing_variable():
    with pytest.raises(ActionError, match="cannot run /nonexistent/restart"):
        action({"argv": ["/nonexistent/restart"]}).run()
    with pytest.raises(ActionError, match="OPS_NOT_SET_ANYWHERE is not set"):
        action({"argv": ["true"], "env": {"X": "${OPS_NOT_SET_ANYWHERE}"}}).run()


def test_it_rejects_bad_settings_naming_the_key():
    with pytest.raises(ActionError, match=r"settings\.argv: must be a non-empty list"):
        action({"argv": "systemctl restart web"})
    with pytest.raises(ActionError, match=r"settings\.shell: unknown key"):
        action({"argv": ["true"], "shell": True})


@pytest.mark.slow("waits out the timeout a descendant process outlives")
def test_it_is_not_held_past_its_timeout_by_a_descendant_that_left_the_group(tmp_path):
    # The grandchild setsid()s, so the group kill misses it, and it keeps the output pipe open.
    pid_file = tmp_path / "escaped.pid"
    script = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '30'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    try:
        with pytest.raises(ActionError, match=r"did not finish within 1 s; output: started"):
            action({"argv": [PY, "-c", script]}, timeout=1).run()
        elapsed = time.monotonic() - started
    finally:
        if pid_file.exists():
            with contextlib.suppress(psutil.NoSuchProcess):
                escaped = psutil.Process(int(pid_file.read_text()))
                escaped.kill()
                escaped.wait(timeout=10)
    assert elapsed < 10  # timeout + pipe grace + slack; the old code waited out the 30 s sleep


def test_it_runs_with_a_minimal_environment_and_what_env_passthrough_names(monkeypatch):
    monkeypatch.setenv("OTHER_SERVICE_SECRET", "other-service-secret-value")
    monkeypatch.setenv("DEPLOY_TARGET", "blue")
    names = ["OTHER_SERVICE_SECRET", "PATH", "DEPLOY_TARGET", "OPSPORTAL_SERVICE"]
    code = "import os, sys; print(' '.join(sorted(k for k in sys.argv[1:] if k in os.environ)))"
    plain = action({"argv": [PY, "-c", code, *names]}).run()
    assert plain.detail == "exit 0; output: OPSPORTAL_SERVICE PATH"
    passed = action({"argv": [PY, "-c", code, *names], "env_passthrough": ["DEPLOY_TARGET"]}).run()
    assert passed.detail == "exit 0; output: DEPLOY_TARGET OPSPORTAL_SERVICE PATH"


def test_it_refuses_env_passthrough_of_the_portal_s_own_secrets():
    with pytest.raises(ActionError, match="DATABASE_URL"):
        action({"argv": [PY, "-c", "print(1)"], "env_passthrough": ["DATABASE_URL"]}).run()
