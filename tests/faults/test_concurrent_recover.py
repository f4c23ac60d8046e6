"""50 concurrent POST /health/recover for one service through gunicorn (2 workers × 4 threads): one action runs.

The action appends a line to a file and takes a second, so the requests really overlap; every other request
must be answered (200) with a skip that says why, never a second run and never a 5xx.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.faults.portal import Portal, own_database

pytestmark = pytest.mark.faults
REQUESTS = 50


def test_it_runs_exactly_one_action_for_fifty_concurrent_recover_requests(tmp_path: Path) -> None:
    ran, marker = tmp_path / "ran.txt", tmp_path / "fixed"
    config = tmp_path / "portal.toml"
    config.write_text(
        f"""
[[service]]
name = "app"
kind = "command"
argv = ["test", "-f", "{marker}"]

  [[service.recovery]]
  kind = "command"
  argv = ["sh", "-c", "echo ran >> {ran}; touch {marker}; sleep 1"]
  verify_delay = 0
  cooldown = 300
"""
    )
    with own_database(tmp_path, "test_h9_recover") as url:
        portal = Portal(tmp_path, url, AUTO_RECOVERY_ENABLED="false", DJANGO_SUPERUSER_PASSWORD="not-used-x9")
        try:
            portal.install(config)
            portal.manage("createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.org")
            token = portal.manage("createapitoken", "ops").stdout.strip()
            base = portal.start_web()

            barrier = threading.Barrier(REQUESTS)

            def post(_: int) -> requests.Response:
                barrier.wait(timeout=30)
                return requests.post(
                    base + "/health/recover",
                    json={"services": ["app"]},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=120,
                )

            with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
                answers = list(pool.map(post, range(REQUESTS)))
        finally:
            portal.stop()

    assert [a.status_code for a in answers] == [200] * REQUESTS, [a.text[:200] for a in answers if a.status_code != 200]
    results = [a.json()["results"][0] for a in answers]
    succeeded = [r for r in results if r["success"]]
    assert len(succeeded) == 1, results
    skipped = [r for r in results if not r["success"]]
    assert all(r.get("skipped") for r in skipped), [r for r in skipped if not r.get("skipped")]
    assert ran.read_text().splitlines() == ["ran"]  # the action itself ran once, whatever the answers say
