"""Another portal process, for the reaping tests: a real process that starts services as the portal does.

`OtherPortal.start_detached(argv)` runs a second Python process that calls `core.procs.start_detached`
(the code a web worker or a qcluster worker runs for a restart) and stays alive, so the started service is
that process's child, not the test's: when it exits, only that process can reap it. `zombie_of_another()`
leaves a zombie that belongs to another live process (one that never waits for its child).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil

from core.procs import ProcRef
from tests.servers import wait_for

PY = sys.executable
PROJECT = Path(__file__).resolve().parents[2]

# argv[1]: the JSON argv to start, argv[2]: its log file. Prints the started ProcRef as JSON, then sleeps.
START_DETACHED = """
import json, sys, time
from core import procs
ref = procs.start_detached(json.loads(sys.argv[1]), log_file=sys.argv[2])
print(json.dumps({"pid": ref.pid, "createTime": ref.create_time}), flush=True)
time.sleep(10**6)
"""

# A parent that never waits: its child exits at once and stays a zombie while the parent lives.
NEVER_WAITS = """
import subprocess, sys, time
child = subprocess.Popen(["true"])
print(child.pid, flush=True)
time.sleep(10**6)
"""


def status(pid: int) -> str:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return "gone"


def is_zombie(pid: int) -> bool:
    return status(pid) == psutil.STATUS_ZOMBIE


class OtherPortal:
    """Second processes a test starts; close() kills them and what they started."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.helpers: list[subprocess.Popen[str]] = []
        self.started: list[int] = []

    def _helper(self, code: str, *args: str) -> tuple[subprocess.Popen[str], str]:
        helper = subprocess.Popen(
            [PY, "-c", code, *args], cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        self.helpers.append(helper)
        assert helper.stdout is not None
        line = helper.stdout.readline()
        assert line, f"helper exited with {helper.wait(5)}"
        return helper, line

    def start_detached(self, argv: Sequence[str]) -> ProcRef:
        """Start argv from another process through procs.start_detached; the ref it recorded."""
        log = self.log_dir / f"other-portal-{len(self.helpers)}.log"
        helper, line = self._helper(START_DETACHED, json.dumps(list(argv)), str(log))
        data = json.loads(line)
        ref = ProcRef(int(data["pid"]), float(data["createTime"]))
        self.started.append(ref.pid)
        assert psutil.Process(ref.pid).ppid() == helper.pid  # its child, not ours
        return ref

    def zombie(self) -> psutil.Process:
        """A zombie whose parent (another live process) never reaps it."""
        _, line = self._helper(NEVER_WAITS)
        pid = int(line)
        assert wait_for(lambda: is_zombie(pid), timeout=10)
        return psutil.Process(pid)

    def close(self) -> None:
        for pid in self.started:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        for helper in self.helpers:
            helper.kill()
            helper.wait(10)
            if helper.stdout:
                helper.stdout.close()


def other_portal_fixture(tmp_path: Path) -> Iterator[OtherPortal]:
    other = OtherPortal(tmp_path)
    try:
        yield other
    finally:
        other.close()
