"""procs.find_processes / procs.stop with real processes: argv matching, decoys, the portal's own processes."""

from __future__ import annotations

import getpass
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from core import procs
from tests.core.procs_decoys import PROJECT, PY, SLEEP, Spawned, running, settle
from tests.servers import wait_for


@pytest.fixture
def spawned() -> Iterator[Spawned]:
    s = Spawned()
    yield s
    s.cleanup()


@pytest.fixture
def marker() -> str:
    return f"opsportal-match-{uuid.uuid4().hex[:10]}"


def pids(found: list[psutil.Process]) -> set[int]:
    return {p.pid for p in found}


@pytest.mark.slow("starts a real worker and decoy processes")
def test_it_finds_the_worker_and_not_a_tail_of_its_log_or_a_pgrep_loop(spawned, marker, tmp_path):
    worker = spawned.worker(marker)
    spawned.decoys(marker, tmp_path)
    for _ in range(20):  # the loop's pgrep comes and goes: look many times
        assert pids(procs.find_processes(cmdline_contains=marker)) == {worker.pid}
        settle()


@pytest.mark.slow("starts real decoy processes to match against")
def test_it_finds_nothing_when_only_decoys_run(spawned, marker, tmp_path):
    spawned.decoys(marker, tmp_path)
    for _ in range(20):
        assert procs.find_processes(cmdline_contains=marker) == []
        settle()


@pytest.mark.parametrize(
    ("pattern", "argv", "expected"),
    [
        ("worker", ["/usr/bin/python3", "worker"], True),
        ("worker", ["/usr/bin/python3", "worker.py"], False),  # a whole element, not a substring
        ("worker", ["/usr/bin/python3", "-c", "x", "my-worker"], False),
        ("cloudflared tunnel", ["/usr/local/bin/cloudflared", "tunnel", "run"], True),  # basename of the program
        ("cloudflared tunnel", ["/usr/local/bin/cloudflared", "--quiet", "tunnel"], False),  # consecutive
        ("/usr/local/bin/cloudflared", ["/usr/local/bin/cloudflared", "tunnel"], True),
        ("/opt/cloudflared", ["/usr/local/bin/cloudflared", "tunnel"], False),  # a path must be the whole element
        ("manage.py rqworker default", ["python", "/srv/app/manage.py", "rqworker", "default"], True),
        ("manage.py rqworker default", ["python", "manage.py", "rqworker", "high", "default"], False),
        ("fake.py --port 123", ["python", "/t/fake.py", "--port", "123"], True),
        ("fake.py --port 123", ["python", "/t/fake.py", "--port", "1234"], False),
        ("'my worker' --x", ["/bin/w", "my worker", "--x"], True),  # shell quoting keeps one element whole
        ("worker", ["tail", "-f", "worker"], False),  # an observer's argument is not the process
        ("worker", ["sudo", "pgrep", "-f", "worker"], False),
        ("worker", ["vim", "worker"], False),
        ("tail -f worker", ["/usr/bin/tail", "-f", "worker"], True),  # unless the pattern names the observer
    ],
)
def test_it_matches_whole_consecutive_argv_elements(pattern, argv, expected):
    assert procs.argv_matches(procs.split_pattern(pattern), argv) is expected


def test_it_rejects_a_pattern_that_splits_into_nothing_or_has_an_open_quote():
    for bad in ("", "   ", "a 'b"):
        with pytest.raises(ValueError):
            procs.split_pattern(bad)


def test_it_filters_by_exe_user_and_cwd(spawned, marker, tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    worker = spawned.start([PY, "-c", SLEEP, marker], cwd=here)
    elsewhere = spawned.start([PY, "-c", SLEEP, marker], cwd=tmp_path)
    both = {worker.pid, elsewhere.pid}
    assert pids(procs.find_processes(cmdline_contains=marker)) == both
    assert pids(procs.find_processes(cmdline_contains=marker, cwd=str(here))) == {worker.pid}
    assert pids(procs.find_processes(cmdline_contains=marker, exe=os.path.realpath(PY))) == both
    # The venv's python is a symlink: `exe` is compared resolved.
    assert pids(procs.find_processes(cmdline_contains=marker, exe=PY)) == both
    assert procs.find_processes(cmdline_contains=marker, exe="/bin/sh") == []
    assert pids(procs.find_processes(cmdline_contains=marker, user=getpass.getuser())) == both
    assert pids(procs.find_processes(cmdline_contains=marker, user=str(os.getuid()))) == both
    assert procs.find_processes(cmdline_contains=marker, user="nobody-" + marker[-6:]) == []


def test_a_broad_match_never_includes_this_process_or_its_ancestors(spawned, marker):
    me = psutil.Process()
    mine = {me.pid} | {p.pid for p in me.parents()}
    other = spawned.worker(marker)  # a process of the same interpreter that is not ours
    broad = procs.find_processes(cmdline_contains=PY)  # the venv path this test itself runs under
    assert other.pid in pids(broad)
    assert not mine & pids(broad)
    assert not mine & pids(procs.find_processes(process_name=me.name()))


def test_a_match_from_a_child_never_finds_the_child_or_its_ancestors(spawned, marker, tmp_path):
    # Both the caller and its parent carry the marker as a whole argv element, as a broad match would see them.
    out = tmp_path / "found.json"
    child = (
        "import json, sys; from core import procs\n"
        "found = [p.pid for p in procs.find_processes(cmdline_contains=sys.argv[2])]\n"
        "open(sys.argv[1], 'w').write(json.dumps(found))\n"
    )
    parent = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {child!r}, {str(out)!r}, sys.argv[1]]); time.sleep(60)"
    )
    other = spawned.worker(marker)  # started first: the child looks once
    intermediate = spawned.start([PY, "-c", parent, marker], cwd=PROJECT)
    assert wait_for(lambda: out.exists() and out.read_text().endswith("]"), timeout=20)
    assert json.loads(out.read_text()) == [other.pid]  # not the caller, not its parent
    assert running(intermediate)


@pytest.mark.system
def test_it_never_matches_or_stops_the_portal_cluster_but_keeps_what_it_started_matchable(spawned, marker, tmp_path):
    main, worker, service = spawned.fake_portal(marker, tmp_path)
    assert procs.find_processes(cmdline_contains=f"manage.py qcluster {marker}") == []
    assert procs.find_processes(cmdline_contains=f"worker-{marker}") == []
    assert pids(procs.find_processes(cmdline_contains=f"service-{marker}")) == {service.pid}
    assert main.pid in procs.portal_pids() and worker.pid in procs.portal_pids()

    # Even handed the portal's processes directly, stop() leaves them (and their workers) alone.
    stopped = procs.stop([main, worker, service], grace=2)
    assert stopped == [service.pid]
    assert running(main) and running(worker)
    assert not running(service)


def test_stop_never_signals_the_calling_process_or_an_ancestor(spawned, tmp_path):
    # Run in a child so that a regression kills only this test's own intermediate process.
    out = tmp_path / "stopped.json"
    child = (
        "import json, sys, psutil; from core import procs; me = psutil.Process()\n"
        "done = procs.stop([me.parent(), me], grace=0.5)\n"
        "open(sys.argv[1], 'w').write(json.dumps(done))\n"
    )
    parent = (
        f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {child!r}, {str(out)!r}]); time.sleep(60)"
    )
    intermediate = spawned.start([PY, "-c", parent], cwd=PROJECT)
    assert wait_for(lambda: out.exists() and out.read_text().endswith("]"), timeout=20)
    assert json.loads(out.read_text()) == []
    assert running(intermediate)


@pytest.mark.system
def test_it_keeps_the_pid_file_match_and_refuses_a_pid_file_naming_the_portal(spawned, marker, tmp_path):
    worker = spawned.worker(marker)
    pid_file = tmp_path / "w.pid"
    pid_file.write_text(str(worker.pid))
    assert pids(procs.find_processes(pid_file=str(pid_file))) == {worker.pid}
    main, _, _ = spawned.fake_portal(marker, tmp_path)
    Path(pid_file).write_text(str(main.pid))
    assert procs.find_processes(pid_file=str(pid_file)) == []


# What names another process without being it: service managers, container and cluster clients, remote
# shells; and what runs a program as its child (or execs it) and so is never the program itself.
SUPERVISOR_ARGV = ["/usr/bin/timeout", "--signal=KILL", "--", "7.000s", "/opt/worker"]


@pytest.mark.parametrize(
    ("pattern", "argv", "expected"),
    [
        ("worker", ["systemctl", "restart", "worker"], False),
        ("worker", ["/usr/bin/docker", "logs", "-f", "worker"], False),
        ("worker", ["podman", "logs", "worker"], False),
        ("worker", ["kubectl", "logs", "worker"], False),
        ("worker", ["ssh", "host", "worker"], False),
        ("worker", ["service", "worker", "status"], False),
        ("worker", ["supervisorctl", "restart", "worker"], False),
        ("worker", ["sudo", "-u", "app", "/opt/worker"], False),  # sudo's child is the worker
        ("worker", ["su", "app", "-c", "worker"], False),
        ("worker", ["runuser", "-u", "app", "--", "/opt/worker"], False),
        ("worker", ["xargs", "-n1", "worker"], False),
        ("worker", ["nohup", "/opt/worker"], False),
        ("worker", ["/usr/bin/env", "A=1", "/opt/worker"], False),
        ("worker", ["timeout", "5", "/opt/worker"], False),
        ("worker", SUPERVISOR_ARGV, False),  # the portal's own supervisor wrapper
        ("timeout --signal=KILL", SUPERVISOR_ARGV, False),  # even when the pattern names it
        ("/usr/bin/timeout", SUPERVISOR_ARGV, False),
        ("timeout 5 worker", ["timeout", "5", "worker"], True),  # an operator's own timeout, named
        ("systemctl status", ["systemctl", "status", "worker"], True),
        ("worker", ["/opt/worker", "--notify", "ssh"], True),  # a tool's name after the match is an argument
    ],
)
def test_it_never_matches_a_tool_that_names_or_runs_the_process(pattern, argv, expected):
    assert procs.argv_matches(procs.split_pattern(pattern), argv) is expected


@pytest.mark.skipif(procs.supervisor() is None, reason="needs GNU coreutils timeout")
def test_it_finds_a_supervised_child_and_never_the_portal_s_timeout_wrapper(spawned, marker):
    # The portal's own wrapper (supervised_argv) carries the child's argv: only the child is the process.
    wrapper = spawned.start(procs.supervised_argv([PY, "-c", SLEEP, marker], 60))
    assert wait_for(lambda: wrapper.children(), timeout=10)
    (child,) = wrapper.children()
    for pattern in (marker, f"{PY} -c", "timeout --signal=KILL"):
        found = pids(procs.find_processes(cmdline_contains=pattern))
        assert wrapper.pid not in found, pattern
    assert pids(procs.find_processes(cmdline_contains=marker)) == {child.pid}
