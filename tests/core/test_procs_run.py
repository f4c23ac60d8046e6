"""procs.run_argv with real subprocesses: the one bounded runner of the command probe and action."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from core import procs
from core.procs import PIPE_GRACE_SECONDS, PORTAL_ONLY_ENV, run_argv
from tests.servers import wait_for

PY = sys.executable


def gone(pid: int) -> bool:
    # A killed process re-parented to init may linger a moment as a zombie: that counts as gone.
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    """Where a test's script writes a descendant's pid; whatever it names is killed afterwards."""
    path = tmp_path / "descendant.pid"
    yield path
    if path.exists():
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(int(path.read_text()))
            proc.kill()
            proc.wait(timeout=10)


def test_it_returns_the_exit_code_and_both_streams_apart():
    done = run_argv([PY, "-c", "import sys; print('out'); sys.stderr.write('err\\n'); sys.exit(3)"], 10)
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")
    assert done.timed_out is False and done.truncated is False


def test_it_folds_stderr_into_stdout_when_asked():
    code = "import sys; print('out', flush=True); sys.stderr.write('err\\n')"
    done = run_argv([PY, "-c", code], 10, merge_stderr=True)
    assert done.stdout == b"out\nerr\n"
    assert done.stderr == b""


def test_it_never_uses_a_shell(tmp_path):
    with pytest.raises(TypeError, match="never a shell string"):
        run_argv(f"touch {tmp_path / 'pwned'}", 10)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        run_argv(["echo hello; exit 0"], 10)
    assert not (tmp_path / "pwned").exists()


def test_it_runs_in_the_given_directory(tmp_path):
    done = run_argv([PY, "-c", "import os; print(os.getcwd())"], 10, cwd=tmp_path)
    assert done.stdout.decode().strip() == str(tmp_path.resolve())


@pytest.mark.slow("waits out the timeout")
def test_it_kills_the_whole_group_on_timeout(pid_file):
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('working', flush=True)\n"
        "time.sleep(60)\n"
    )
    done = run_argv([PY, "-c", code], 1)
    assert done.timed_out is True
    assert done.returncode == -9  # SIGKILL
    assert done.stdout == b"working\n"  # what came before the kill is kept
    assert wait_for(lambda: gone(int(pid_file.read_text())), timeout=5)


@pytest.mark.slow("waits out the timeout a backgrounded descendant outlives")
def test_it_kills_a_backgrounded_descendant_that_holds_the_pipe_after_the_child_exits(pid_file):
    # `sh -c 'sleep 60 &'`: the child exits at once, the sleep (same group) keeps stdout open.
    done = run_argv(["sh", "-c", f"sleep 60 & echo $! > {pid_file}"], 1)
    assert done.timed_out is True
    assert done.returncode == 0  # the shell itself had exited
    assert wait_for(lambda: gone(int(pid_file.read_text())), timeout=5)


@pytest.mark.slow("waits out the timeout of a child that runs on")
def test_it_bounds_a_child_that_closed_its_pipes_but_runs_on():
    started = time.monotonic()
    done = run_argv(["sh", "-c", "exec >&- 2>&-; sleep 60"], 1)
    assert done.timed_out is True and done.returncode == -9
    assert time.monotonic() - started < 1 + PIPE_GRACE_SECONDS + 5  # the timeout, not the 60 s sleep


@pytest.mark.slow("waits out the timeout a descendant process outlives")
def test_it_is_not_held_by_a_descendant_that_left_the_group(pid_file):
    # The grandchild setsid()s: the group kill misses it and it keeps stdout open for 60 s.
    code = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    done = run_argv([PY, "-c", code], 1)
    elapsed = time.monotonic() - started
    assert done.timed_out is True
    assert not gone(int(pid_file.read_text()))  # it did escape, so the pipe really was held
    assert elapsed < 1 + PIPE_GRACE_SECONDS + 5  # timeout + grace + slack, not the 60 s sleep


@pytest.mark.parametrize(("keep", "expected"), [("head", b"a" * 1000), ("tail", b"z" * 1000)])
def test_it_keeps_at_most_the_cap_of_the_output(keep, expected):
    # Far more than a pipe buffer: the rest is read and dropped, so the child never blocks on a full pipe.
    code = "import sys; sys.stdout.write('a' * 500_000 + 'z' * 500_000)"
    done = run_argv([PY, "-c", code], 30, max_output=1000, keep=keep)
    assert done.timed_out is False and done.returncode == 0
    assert done.stdout == expected
    assert done.truncated is True


def test_it_keeps_output_within_the_cap_whole():
    done = run_argv([PY, "-c", "print('x' * 999, end='')"], 10, max_output=1000, keep="tail")
    assert done.stdout == b"x" * 999
    assert done.truncated is False


def test_it_keeps_the_portal_secrets_from_the_child_and_passes_the_extra_env(monkeypatch):
    for name in PORTAL_ONLY_ENV:
        monkeypatch.setenv(name, f"portal-only-{name.lower()}")
    monkeypatch.setenv("KEPT_FOR_CHILD", "kept")
    code = "import json, os, sys; print(json.dumps({k: os.environ[k] for k in sys.argv[1:] if k in os.environ}))"
    done = run_argv(
        [PY, "-c", code, *PORTAL_ONLY_ENV, "KEPT_FOR_CHILD", "OPSPORTAL_SERVICE"],
        10,
        env={"OPSPORTAL_SERVICE": "svc"},
        passthrough=["KEPT_FOR_CHILD"],
    )
    assert json.loads(done.stdout) == {"KEPT_FOR_CHILD": "kept", "OPSPORTAL_SERVICE": "svc"}


# BusyBox's `timeout`: only `timeout [-s SIG] [-k KILL_SECS] SECS PROG ARGS`; `--version` and
# `--signal=KILL -- 12.000s` are usage errors.
BUSYBOX_TIMEOUT = """#!/bin/sh
echo "timeout: unrecognized option: $1" >&2
echo "BusyBox v1.36.1 (2023-11-07 18:53:09 UTC) multi-call binary." >&2
echo "Usage: timeout [-s SIG] [-k KILL_SECS] SECS PROG ARGS" >&2
exit 1
"""


@pytest.fixture
def busybox_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """PATH with a BusyBox-style `timeout` first; the supervisor lookup is redone under it and after."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "timeout"
    fake.write_text(BUSYBOX_TIMEOUT)
    fake.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    monkeypatch.setenv("PATH", path)
    yield path
    monkeypatch.undo()
    with contextlib.suppress(AttributeError):  # the lookup is cached: redo it under the real PATH
        procs.supervisor.cache_clear()


@pytest.mark.system
def test_it_runs_commands_unsupervised_in_a_portal_that_finds_a_busybox_timeout(busybox_path, tmp_path):
    # A fresh portal process (the supervisor is looked up once per process) on a BusyBox host.
    script = """
import sys
import django
django.setup()
from core.procs import run_argv
done = run_argv([sys.executable, "-c", "print('ran')"], 10)
print(done.returncode, done.stdout.decode().strip(), done.stderr.decode().strip()[:200])
"""
    env = {
        **os.environ,
        "PATH": busybox_path,
        "DJANGO_SETTINGS_MODULE": "opsportal.settings",
        "DEBUG": "true",
        "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
        "LOG_DIR": str(tmp_path / "logs"),
    }
    proc = subprocess.run([PY, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].strip() == "0 ran"


def test_it_takes_no_supervisor_but_gnu_coreutils_timeout(busybox_path):
    procs.supervisor.cache_clear()
    assert procs.supervisor() is None
    assert procs.supervised_argv(["true"], 5) == ["true"]
    done = run_argv([PY, "-c", "print('ran')"], 10)
    assert (done.returncode, done.stdout) == (0, b"ran\n")
    assert procs.SUPERVISOR is None


def test_it_supervises_with_the_real_gnu_timeout():
    real = shutil.which("timeout")
    if real is None or b"GNU coreutils" not in subprocess.run([real, "--version"], capture_output=True).stdout:
        pytest.skip("needs GNU coreutils `timeout`")
    procs.supervisor.cache_clear()
    assert procs.supervisor() == real
    assert procs.supervised_argv(["true"], 5) == [real, "--signal=KILL", "--", "7.000s", "true"]
    parents: list[str] = []
    done = run_argv(
        [PY, "-c", "import os, psutil; print(psutil.Process(os.getppid()).name())"],
        10,
        on_start=lambda started: parents.append(str(started.supervised)),
    )
    assert (done.returncode, done.stdout.strip(), parents) == (0, b"timeout", ["True"])
