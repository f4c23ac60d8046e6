"""/health/status and /metrics across real gunicorn workers: a committed change shows in the next answer of
every worker, and no answer is older than one already given (issue 15 item 10)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.gunicorn_portal import Portal, gunicorn_portal
from tests.servers import free_port

REQUESTS = 16  # per step, four at a time: both workers answer


def config() -> str:
    return f"""
[[service]]
name = "api"
kind = "tcp"
host = "127.0.0.1"
port = {free_port()}
"""


def status(portal: Portal) -> tuple[int, dict]:
    code, body = portal.raw(b"GET /health/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    return code, json.loads(body)


def metrics(portal: Portal) -> str:
    code, body = portal.raw(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert code == 200
    return body.decode()


def commit_state(portal: Portal, at: datetime, state: str, failures: int) -> None:
    # As a probe round on another host writes it: one committed UPDATE, no portal process told.
    portal.sql(
        "UPDATE health_service SET status = ?, state_type = 'hard', consecutive_failures = ?, last_checked_at = ?,"
        " last_latency_ms = 1.0 WHERE name = 'api'",
        state,
        failures,
        at.strftime("%Y-%m-%d %H:%M:%S.%f"),
    )


@pytest.mark.system
def test_it_shows_a_committed_change_in_every_next_answer_of_every_worker_and_never_goes_back(tmp_path) -> None:
    with (
        gunicorn_portal(tmp_path, workers=2, config=config(), STATUS_CACHE_SECONDS="5") as portal,
        ThreadPoolExecutor(4) as pool,
    ):
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        commit_state(portal, start, "up", 0)
        # Warm both workers' snapshots (a 5 s ttl: nothing below would expire on its own).
        assert {code for code, _ in pool.map(lambda _: status(portal), range(REQUESTS))} == {200}
        assert "opsportal_service_up" in metrics(portal)
        seen: list[str] = []
        for step, (state, failures, code, overall) in enumerate(
            [("down", 2, 503, "down"), ("up", 0, 200, "healthy"), ("down", 3, 503, "down"), ("up", 0, 200, "healthy")],
            start=1,
        ):
            at = start + timedelta(seconds=step)
            commit_state(portal, at, state, failures)
            answers = list(pool.map(lambda _: status(portal), range(REQUESTS)))
            for got_code, body in answers:
                service = body["services"]["api"]
                assert (got_code, body["status"], service["status"]) == (code, overall, state), (step, body)
                assert datetime.fromisoformat(service["lastCheckedAt"]) == at, (step, service)
                seen.append(service["lastCheckedAt"])
            for _ in range(4):  # successive requests, one after another
                text = metrics(portal)
                assert f'opsportal_service_status{{service="api",status="{state}"}} 1.0' in text, (step, text)
                assert f'opsportal_service_consecutive_failures{{service="api"}} {failures}.0' in text, (step, text)
        assert seen == sorted(seen)  # lastCheckedAt never went back
