"""A qcluster SIGKILLed while its auto-recovery runs `sleep 600` with `timeout = 10` (issue 15 item 5).

Before the fix the sleep ran on under PID 1 past its timeout, and the service stayed locked until
RECOVERY_STALE_AFTER (15 minutes), `--force` included. Now: the action's supervisor ends it within its
timeout plus SUPERVISOR_GRACE_SECONDS although the process that enforced the timeout is gone, the attempt
is taken over at once (its owner's process is gone from this host) and marked `abandoned` with that reason,
and `recover --force` runs the action again right away.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import psutil
import pytest

from core.procs import SUPERVISOR, SUPERVISOR_GRACE_SECONDS
from tests.faults.portal import Portal, own_database
from tests.servers import wait_for

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(SUPERVISOR is None, reason="needs coreutils `timeout` (Linux)"),
]
TIMEOUT = 10


def attempts(portal: Portal) -> list[tuple[str, str, str]]:
    return portal.query("SELECT outcome, detail, action_detail FROM recovery_recoveryattempt ORDER BY id")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_it_ends_the_orphaned_action_within_its_timeout_and_frees_the_service_at_once(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    quick = tmp_path / "quick"  # once it exists, the action exits at once (the forced run afterwards)
    config = tmp_path / "portal.toml"
    config.write_text(
        f"""
[[service]]
name = "broken"
kind = "command"
argv = ["sh", "-c", "exit 2"]  # Nagios CRITICAL: down
interval = 10
failure_threshold = 1

  [[service.recovery]]
  kind = "command"
  argv = ["sh", "-c", "echo $$ >> {pids}; [ -e {quick} ] && exit 0; exec sleep 600"]
  timeout = {TIMEOUT}
  verify_delay = 0
"""
    )
    with own_database(tmp_path, "test_h9_orphan") as url:
        portal = Portal(tmp_path, url, Q_WORKERS="2")
        try:
            portal.install(config)
            portal.start_qcluster("qcluster-1")
            assert wait_for(lambda: pids.exists() and pids.read_text().strip(), timeout=150, interval=0.2), portal.log(
                "qcluster-1"
            )[-3000:]
            sleeper = int(pids.read_text().split()[0])
            started = psutil.Process(sleeper).create_time()
            assert [o for o, _, _ in attempts(portal)] == ["in_progress"]
            portal.kill("qcluster-1")
            killed_at = time.time()
            assert not _gone(sleeper)  # orphaned: the process that enforced its timeout is gone

            assert wait_for(lambda: _gone(sleeper), timeout=TIMEOUT + SUPERVISOR_GRACE_SECONDS + 5, interval=0.1)
            ended = time.time() - started
            # Within its timeout plus the supervisor's grace (and the 0.1 s poll), never its 600 s.
            assert ended <= TIMEOUT + SUPERVISOR_GRACE_SECONDS + 1.0, ended
            assert [o for o, _, _ in attempts(portal)] == ["in_progress"]  # nobody took it over yet

            quick.touch()
            forced_at = time.monotonic()
            done = portal.manage("recover", "broken", "--force", check=False)
            took = time.monotonic() - forced_at
        finally:
            portal.stop()
            for pid in pids.read_text().split() if pids.exists() else []:  # whatever a failure left running
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(int(pid)).kill()

        first, second = attempts(portal)  # read before the database is dropped
        assert first[0] == "abandoned", first
        assert "is gone" in first[1] and "ended" in first[1], first  # why, and what became of its action
        # The service was not locked: the forced run ran the action (exit 0; the service itself stays broken).
        assert second[0] == "failed" and second[2].startswith("exit 0"), (second, done.stdout, done.stderr)
        assert took < 30, took
        assert len(pids.read_text().split()) == 2
        print(f"orphan ended {ended:.1f} s after its start ({time.time() - killed_at:.0f} s since the kill)")
