"""qcluster killed with SIGKILL mid-round, then started again: no slot probed twice, the abandoned recovery
attempt is marked, and every service is back on its schedule.

At the kill a round is in flight: the HTTP targets answer after 2 s and a critical service's auto-recovery
(`sleep 30`) is running, so claims and an `in_progress` attempt are left behind by a dead process. The new
cluster must take the probe claims over (their loop stopped beating) and the recovery claim too: its owner's
heartbeat stopped and its process is gone from this host, so the attempt is marked abandoned with that reason at
the next recovery, whatever its age (RECOVERY_STALE_AFTER bounds only claims without an owner).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.faults.portal import Portal, own_database
from tests.servers import HttpServer, Reply, wait_for

pytestmark = pytest.mark.faults
INTERVAL = 10
HTTP_SERVICES = 3


def results(portal: Portal) -> dict[str, list[datetime]]:
    rows = portal.query(
        "SELECT s.name, r.checked_at FROM health_proberesult r JOIN health_service s ON s.id = r.service_id "
        "ORDER BY r.checked_at"
    )
    out: dict[str, list[datetime]] = {}
    for name, at in rows:
        out.setdefault(name, []).append(at)
    return out


def attempts(portal: Portal) -> list[tuple[str, str]]:
    return portal.query("SELECT outcome, detail FROM recovery_recoveryattempt ORDER BY id")


def test_it_resumes_after_a_kill_mid_round_without_duplicates_and_marks_the_abandoned_attempt(
    tmp_path: Path,
) -> None:
    target = HttpServer().start()
    target.reply = Reply(200, "ok", delay=2)
    config = tmp_path / "portal.toml"
    config.write_text(
        "".join(
            f'[[service]]\nname = "web-{i}"\nkind = "http"\nurl = "{target.url}/{i}"\n'
            f"interval = {INTERVAL}\ntimeout = 5\ncritical = false\n\n"
            for i in range(HTTP_SERVICES)
        )
        + f"""
[[service]]
name = "broken"
kind = "command"
argv = ["sh", "-c", "exit 2"]  # Nagios CRITICAL: down
interval = {INTERVAL}
failure_threshold = 1

  [[service.recovery]]
  kind = "command"
  argv = ["sleep", "30"]
  timeout = 60
  verify_delay = 0
"""
    )
    with own_database(tmp_path, "test_h9_qkill") as url:
        portal = Portal(tmp_path, url, RECOVERY_STALE_AFTER="60", Q_WORKERS="2")
        try:
            portal.install(config)
            portal.start_qcluster("qcluster-1")
            # Django-Q2's scheduler starts the dispatcher within ~30 s; the recovery starts after the first round.
            assert wait_for(lambda: any(o == "in_progress" for o, _ in attempts(portal)), timeout=150, interval=0.5), (
                portal.log("qcluster-1")[-3000:]
            )
            time.sleep(1)
            claimed = portal.query("SELECT count(*) FROM health_service WHERE running_since IS NOT NULL")[0][0]
            assert claimed >= 1  # a round really is in flight
            portal.kill("qcluster-1")
            killed_at = datetime.now(UTC)

            portal.start_qcluster("qcluster-2")

            def resumed() -> bool:
                after = {n: [t for t in ts if t > killed_at] for n, ts in results(portal).items()}
                return len(after) == HTTP_SERVICES + 1 and all(after.values())

            def abandoned() -> bool:
                return [o for o, _ in attempts(portal)][:1] == ["abandoned"]

            assert wait_for(lambda: resumed() and abandoned(), timeout=180, interval=1), (
                attempts(portal),
                {n: len(t) for n, t in results(portal).items()},
                portal.log("qcluster-2")[-3000:],
            )
        finally:
            portal.stop()
            target.stop()

        first = attempts(portal)[0]
        assert "abandoned" in first[1] and "is gone" in first[1], first
        for name, times in results(portal).items():
            gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
            # One result per slot: two for one due time would be a gap near zero.
            assert all(g > INTERVAL / 2 for g in gaps), (name, gaps)
