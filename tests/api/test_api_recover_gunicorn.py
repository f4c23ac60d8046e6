"""POST /health/recover through a real gunicorn: a chunked body (no Content-Length) is refused, never read as empty."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.gunicorn_portal import gunicorn_portal
from tests.servers import free_port


def config() -> str:
    # "other" needs recovery (critical, HARD down): an empty body would recover it.
    return f"""
[[service]]
name = "backend"
kind = "tcp"
host = "127.0.0.1"
port = {free_port()}

[[service]]
name = "other"
kind = "tcp"
host = "127.0.0.1"
port = {free_port()}

  [[service.recovery]]
  kind = "command"
  argv = [{json.dumps(sys.executable)}, "-c", "pass"]
  verify_delay = 0
"""


def chunked(token: str, body: bytes) -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    return (
        b"POST /health/recover HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n\r\n" + chunks
    )


def attempts(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT s.name FROM recovery_recoveryattempt a JOIN health_service s ON s.id = a.service_id"
            )
        ]


@pytest.mark.system
def test_it_refuses_a_chunked_recover_body_instead_of_recovering_every_service(tmp_path) -> None:
    with gunicorn_portal(tmp_path, config=config()) as portal:
        portal.sql("UPDATE health_service SET status = 'down', state_type = 'hard' WHERE name = 'other'")
        body = json.dumps({"services": ["backend"], "force": True}).encode()
        status, answer = portal.raw(chunked(portal.token, body))
        assert status == 411, answer
        assert json.loads(answer)["error"].startswith("request body without Content-Length (chunked")
        assert attempts(portal.database) == []  # nothing ran: not "other", not anything
        # The same body with a Content-Length is read as sent.
        request = (
            b"POST /health/recover HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n"
            b"Authorization: Bearer %s\r\n\r\n%s" % (len(body), portal.token.encode(), body)
        )
        status, answer = portal.raw(request)
        assert status == 200, answer
        assert json.loads(answer)["services"] == ["backend"]
        assert "other" not in attempts(portal.database)
