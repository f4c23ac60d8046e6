"""Real processes for the process-matching tests: a worker, the decoys an operator leaves running, a fake portal.

Every process is started in a session of its own (as systemd or the portal starts them) and killed,
with its descendants, by `Spawned.cleanup()`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.servers import wait_for

PY = sys.executable
PROJECT = Path(__file__).resolve().parents[2]
SLEEP = "import time; time.sleep(10**6)"
# Writes the child's whole environment as JSON to the file named by argv[1], then sleeps (a service that stays up).
PRINT_ENV_TO_FILE = (
    "import json, os, sys, time; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ))); time.sleep(60)"
)

# A fake portal cluster: started as `python -c FAKE_PORTAL <project>/manage.py qcluster MARKER PIDS_FILE`.
# It starts one worker in its own session (as Django-Q2's forked workers are) and one service detached in a
# session of its own (as start_detached does), writes their pids, and sleeps.
FAKE_PORTAL = f"""
import json, subprocess, sys, time
marker, pids_file = sys.argv[3], sys.argv[4]
worker = subprocess.Popen([sys.executable, "-c", {SLEEP!r}, "worker-" + marker])
service = subprocess.Popen([sys.executable, "-c", {SLEEP!r}, "service-" + marker], start_new_session=True)
open(pids_file, "w").write(json.dumps({{"worker": worker.pid, "service": service.pid}}))
time.sleep(10**6)
"""


class Spawned:
    """Processes a test starts; cleanup() kills each with its descendants."""

    def __init__(self) -> None:
        self.procs: list[psutil.Process] = []

    def start(self, argv: list[str], **popen: object) -> psutil.Process:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True, **popen
        )
        proc = psutil.Process(child.pid)
        self.procs.append(proc)
        return proc

    def track(self, pid: int) -> psutil.Process:
        proc = psutil.Process(pid)
        self.procs.append(proc)
        return proc

    def worker(self, marker: str) -> psutil.Process:
        """The real thing: a sleeping process whose last argv element is the marker."""
        return self.start([PY, "-c", SLEEP, marker])

    def decoys(self, marker: str, tmp_path: Path) -> list[psutil.Process]:
        """An operator's `tail -f …/<marker>.log` and a `while pgrep -f <marker>` loop (whose pgrep runs often)."""
        log = tmp_path / "x" / f"{marker}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        tail = self.start(["tail", "-f", str(log)])
        # The loop's own pgrep has the marker as a whole argv element, many times a second.
        loop = self.start(["sh", "-c", f"while true; do pgrep -f '{marker}' >/dev/null; sleep 0.01; done"])
        assert wait_for(lambda: running(tail) and running(loop), timeout=5)
        return [tail, loop]

    def fake_portal(self, marker: str, tmp_path: Path) -> tuple[psutil.Process, psutil.Process, psutil.Process]:
        """(portal main, its in-session worker, the service it started detached)."""
        pids_file = tmp_path / f"portal-{marker}.json"
        main = self.start([PY, "-c", FAKE_PORTAL, str(PROJECT / "manage.py"), "qcluster", marker, str(pids_file)])
        assert wait_for(lambda: pids_file.exists() and pids_file.read_text().endswith("}"), timeout=10)
        pids = json.loads(pids_file.read_text())
        return main, self.track(pids["worker"]), self.track(pids["service"])

    def cleanup(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(psutil.NoSuchProcess):
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child.kill()
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
                proc.wait(5)


def running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (a killed child of ours stays a zombie until reaped)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def settle() -> None:
    # Let the pgrep loop go round a few times.
    time.sleep(0.1)
