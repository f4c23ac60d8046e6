"""Processes the portal starts are reaped, and stop() never waits on a zombie (issue 15 item 7).

Real processes: what start_detached starts and then exits must not linger as a zombie of the portal
process that started it (a web or qcluster worker lives for days); stop() of a zombie (the child of
another portal process, which only that process can reap) returns at once instead of waiting its grace
after SIGTERM and again after SIGKILL. The reaper waits by pid only, so run_argv's exit statuses in the
same process stay its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from core.procs import ProcRef, run_argv, start_detached, stop, unreaped
from tests.core.other_portal import PY, OtherPortal, is_zombie, other_portal_fixture, status
from tests.servers import wait_for

SLEEP = "import time; time.sleep(10**6)"


@pytest.fixture
def other_portal(tmp_path: Path) -> Iterator[OtherPortal]:
    yield from other_portal_fixture(tmp_path)


def test_it_reaps_a_started_process_that_exits_within_a_second(tmp_path: Path):
    refs = [start_detached(["sh", "-c", f"exit {code}"], log_file=str(tmp_path / "log")) for code in (0, 3, 9)]
    # Exits at once; within a second it must be gone, not a zombie of this process.
    assert wait_for(lambda: all(status(r.pid) == "gone" for r in refs), timeout=1.0), [status(r.pid) for r in refs]
    assert wait_for(lambda: not {r.pid for r in refs} & set(unreaped()), timeout=1.0)  # and forgotten


def test_it_reaps_a_started_process_that_is_stopped(tmp_path: Path):
    ref = start_detached([PY, "-c", SLEEP], log_file=str(tmp_path / "log"))
    proc = ref.process()
    assert proc is not None
    started = time.monotonic()
    assert stop([proc], grace=5) == [ref.pid]
    assert time.monotonic() - started < 2
    assert wait_for(lambda: status(ref.pid) == "gone", timeout=1.0), status(ref.pid)
    assert not ref.alive()


def test_it_never_takes_the_exit_status_of_a_run_argv_child_while_reaping(tmp_path: Path):
    # The reaper waits for its own pids only (never waitpid(-1)): run_argv in the same process keeps its codes.
    stop_starting = threading.Event()

    def keep_starting() -> None:
        while not stop_starting.is_set():
            start_detached(["true"], log_file=str(tmp_path / "log"))
            time.sleep(0.01)

    starter = threading.Thread(target=keep_starting, daemon=True)
    starter.start()
    try:
        codes = [run_argv(["sh", "-c", f"exit {n}"], 10).returncode for n in range(1, 31)]
    finally:
        stop_starting.set()
        starter.join(10)
    assert codes == list(range(1, 31))


def test_it_treats_a_zombie_as_stopped_and_returns_at_once(other_portal: OtherPortal, tmp_path: Path):
    zombie = other_portal.zombie()  # another process's child: we cannot reap it, only wait on it
    live = ProcRef.of(psutil.Process(start_detached([PY, "-c", SLEEP], log_file=str(tmp_path / "log")).pid))
    live_proc = live.process()
    assert live_proc is not None
    started = time.monotonic()
    stopped = stop([zombie, live_proc], grace=3)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"stop() waited {elapsed:.1f} s on a zombie"
    assert sorted(stopped) == sorted([zombie.pid, live.pid])
    assert not live.alive()
    assert is_zombie(zombie.pid)  # still its parent's to reap; stop() neither waited nor hung on it


def test_it_stops_a_process_another_portal_process_started_without_waiting_out_its_grace(other_portal: OtherPortal):
    # The web worker that restarted the service earlier is not the one restarting it now.
    ref = other_portal.start_detached([PY, "-c", SLEEP])
    proc = ref.process()
    assert proc is not None
    started = time.monotonic()
    assert stop([proc], grace=3) == [ref.pid]
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, f"stop() took {elapsed:.1f} s (a zombie waited on for its grace)"
    # And the other process reaped it: no zombie left behind in it either.
    assert wait_for(lambda: status(ref.pid) == "gone", timeout=1.0), status(ref.pid)
