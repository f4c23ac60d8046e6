"""The `process` probe against real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from core.spec import ConfigError
from health.probes.base import DOWN, UP, ProbeConfigError
from health.probes.process import ProcessProbe
from health.runner import probe_once
from tests.core.procs_decoys import Spawned
from tests.factories import ServiceFactory
from tests.servers import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def spawn() -> Iterator:
    """Start real sleeping subprocesses; all are killed and reaped after the test."""
    children: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        child = subprocess.Popen(list(argv) or [sys.executable, "-c", "import time; time.sleep(60)"])
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)


@pytest.fixture
def marker() -> str:
    return f"opsportal-test-{uuid.uuid4().hex[:12]}"


def sleeper(marker: str) -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(60)", marker]


def process_service(**settings):
    return ServiceFactory.build(kind="process", settings=settings)


def test_it_finds_a_process_by_cmdline_and_reports_pid_uptime_rss(spawn, marker):
    child = spawn(*sleeper(marker))
    outcome = probe_once(process_service(cmdline_contains=marker))
    assert outcome.status == UP
    assert outcome.detail.startswith(f"1 running: pid {child.pid}, up ")
    assert "rss " in outcome.detail and "MiB" in outcome.detail


def test_it_is_down_once_the_process_is_killed(spawn, marker):
    child = spawn(*sleeper(marker))
    assert probe_once(process_service(cmdline_contains=marker)).status == UP
    child.kill()
    child.wait(timeout=10)
    outcome = probe_once(process_service(cmdline_contains=marker))
    assert outcome.status == DOWN
    assert outcome.detail == f"0 running for cmdline contains {marker!r} (need 1)"


def test_it_counts_a_zombie_as_dead(spawn, marker, tmp_path):
    child = spawn(*sleeper(marker))
    child.kill()
    # Not reaped yet: the child is a zombie whose cmdline may still be known.
    assert wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE)
    pid_file = tmp_path / "zombie.pid"
    pid_file.write_text(str(child.pid))
    outcome = probe_once(process_service(pid_file=str(pid_file)))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("0 running for pid file")


def test_it_finds_a_process_by_pid_file(spawn, tmp_path):
    child = spawn()
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(f"{child.pid}\n")
    outcome = probe_once(process_service(pid_file=str(pid_file)))
    assert outcome.status == UP
    assert f"pid {child.pid}" in outcome.detail
    child.kill()
    child.wait(timeout=10)
    assert probe_once(process_service(pid_file=str(pid_file))).status == DOWN


def test_it_is_down_for_a_missing_or_garbled_pid_file(tmp_path):
    assert probe_once(process_service(pid_file=str(tmp_path / "none.pid"))).status == DOWN
    garbled = tmp_path / "garbled.pid"
    garbled.write_text("not a pid")
    outcome = probe_once(process_service(pid_file=str(garbled)))
    assert outcome.status == DOWN
    assert "0 running" in outcome.detail


def test_it_finds_a_process_by_name(spawn, tmp_path):
    # A symlink gives the process a name of its own (the kernel's comm is the file name).
    name = "opsh2sleep" + uuid.uuid4().hex[:5]
    link = tmp_path / name
    link.symlink_to("/bin/sleep")
    spawn(str(link), "60")
    assert probe_once(process_service(process_name=name)).status == UP
    assert probe_once(process_service(process_name=name + "x")).status == DOWN


def test_it_needs_min_count_processes(spawn, marker):
    spawn(*sleeper(marker))
    short = probe_once(process_service(cmdline_contains=marker, min_count=2))
    assert short.status == DOWN
    assert short.detail.endswith("(need 2)")
    spawn(*sleeper(marker))
    enough = probe_once(process_service(cmdline_contains=marker, min_count=2))
    assert enough.status == UP
    assert enough.detail.startswith("2 running")


def test_it_never_counts_the_probing_process_itself(tmp_path):
    pid_file = tmp_path / "me.pid"
    pid_file.write_text(str(os.getpid()))
    outcome = probe_once(process_service(pid_file=str(pid_file)))
    assert outcome.status == DOWN


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "needs exactly one of process_name, cmdline_contains, pid_file"),
        ({"process_name": "a", "pid_file": "/x"}, "needs exactly one of process_name, cmdline_contains, pid_file"),
        ({"process_name": "a", "min_count": 0}, r"settings\.min_count: must be a positive integer"),
        ({"cmdline": "a"}, r"settings\.cmdline: unknown key"),
    ],
)
def test_it_rejects_bad_config_naming_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        ProcessProbe.validate_settings(settings, "settings")
    with pytest.raises(ProbeConfigError, match=message):
        ProcessProbe(settings, timeout=1).run()
    outcome = probe_once(process_service(**settings))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error")


def test_it_ignores_a_pid_file_older_than_the_process_it_names(spawn, tmp_path):
    # The pid was written long before this process started: the system has reused the pid.
    child = spawn()
    pid_file = tmp_path / "stale.pid"
    pid_file.write_text(str(child.pid))
    an_hour_ago = time.time() - 3600
    os.utime(pid_file, (an_hour_ago, an_hour_ago))
    outcome = probe_once(process_service(pid_file=str(pid_file)))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("0 running for pid file")


@pytest.fixture
def spawned() -> Iterator[Spawned]:
    s = Spawned()
    yield s
    s.cleanup()


@pytest.mark.slow("starts real decoy processes to match against")
def test_it_is_down_when_only_a_tail_of_the_log_and_a_pgrep_loop_mention_the_worker(spawned, marker, tmp_path):
    # The operator's decoys: `tail -f /tmp/x/<marker>.log` and `while pgrep -f <marker>` (its pgrep runs often).
    spawned.decoys(marker, tmp_path)
    for _ in range(10):
        outcome = probe_once(process_service(cmdline_contains=marker))
        assert outcome.status == DOWN, outcome.detail
        time.sleep(0.05)
    worker = spawned.worker(marker)
    outcome = probe_once(process_service(cmdline_contains=marker))
    assert outcome.status == UP
    assert outcome.detail.startswith(f"1 running: pid {worker.pid},")


def test_it_narrows_the_match_by_exe_user_and_cwd(spawned, marker, tmp_path):
    spawned.start([sys.executable, "-c", "import time; time.sleep(60)", marker], cwd=tmp_path)
    assert probe_once(process_service(cmdline_contains=marker, cwd=str(tmp_path))).status == UP
    assert probe_once(process_service(cmdline_contains=marker, exe=sys.executable, user=str(os.getuid()))).status == UP
    other = probe_once(process_service(cmdline_contains=marker, cwd="/"))
    assert other.status == DOWN
    assert other.detail == f"0 running for cmdline contains {marker!r}, cwd '/' (need 1)"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cmdline_contains": "a 'b"}, r"settings\.cmdline_contains: cannot be split into argv elements"),
        ({"cmdline_contains": "   "}, r"settings\.cmdline_contains: cannot be split into argv elements"),
        ({"exe": "/bin/sh"}, "needs exactly one of process_name, cmdline_contains, pid_file"),
        ({"process_name": "a", "cwd": "relative/dir"}, r"settings\.cwd: must be an absolute path"),
        ({"process_name": "a", "exe": "sh"}, r"settings\.exe: must be an absolute path"),
    ],
)
def test_it_rejects_a_bad_match_naming_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        ProcessProbe.validate_settings(settings, "settings")
    assert probe_once(process_service(**settings)).detail.startswith("config error")
