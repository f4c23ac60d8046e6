"""Logging: the old human format or JSON lines on every handler, daily rotation, and no secret in any log.

The format cases run in fresh interpreters (settings are read once); the secret scan runs the real
commands (migrate, importconfig, runprobes, the notification pass) against loopback servers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path

import pytest
import time_machine
from django.conf import settings as django_settings

from core.logconfig import HUMAN_DATEFMT, HUMAN_FORMAT, JsonFormatter, build_logging
from tests.servers import Reply

BASE_DIR = Path(django_settings.BASE_DIR)
HUMAN_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[(INFO|WARNING|ERROR|DEBUG)\] .+")
LOG_SOME = """
import django, logging
django.setup()
logging.getLogger("opsportal.health").info("Probe round: 3 services in 0.12 s, overall healthy")
logging.getLogger("opsportal.recovery").warning("Recovery of web failed")
logging.getLogger("opsportal.tunnels").info("Tunnel main: ready")
"""


def environment(tmp_path: Path, **env: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(BASE_DIR),
        "DJANGO_SETTINGS_MODULE": "opsportal.settings",
        "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
        "LOG_DIR": str(tmp_path / "logs"),
        "SECRET_KEY": "k" * 50,
        "DEBUG": "false",
        "DATABASE_URL": "",
        "REDIS_URL": "",
        **env,
    }


def python(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=environment(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.system
def test_it_writes_the_old_human_format_to_the_console_and_the_two_files(tmp_path):
    done = python(tmp_path, LOG_SOME, LOG_FORMAT="human")
    assert done.returncode == 0, done.stderr
    console = done.stderr.splitlines()
    assert len(console) == 3 and all(HUMAN_LINE.match(line) for line in console)
    assert console[0].endswith("] [INFO] Probe round: 3 services in 0.12 s, overall healthy")
    system = (tmp_path / "logs" / "system-monitor.log").read_text().splitlines()
    tunnel = (tmp_path / "logs" / "tunnel-monitor.log").read_text().splitlines()
    assert [line.split("] ", 2)[2] for line in system] == [
        "Probe round: 3 services in 0.12 s, overall healthy",
        "Recovery of web failed",
    ]
    assert [line.split("] ", 2)[1] + "]" for line in system] == ["[INFO]", "[WARNING]"]
    assert len(tunnel) == 1 and tunnel[0].endswith("] [INFO] Tunnel main: ready")


@pytest.mark.system
def test_it_writes_one_json_object_per_line_on_every_handler_with_log_format_json(tmp_path):
    done = python(tmp_path, LOG_SOME, LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    for text in (
        done.stderr,
        (tmp_path / "logs" / "system-monitor.log").read_text(),
        (tmp_path / "logs" / "tunnel-monitor.log").read_text(),
    ):
        entries = [json.loads(line) for line in text.splitlines()]
        assert entries and all(set(e) == {"time", "level", "logger", "message"} for e in entries)
    first = json.loads(done.stderr.splitlines()[0])
    assert (first["level"], first["logger"]) == ("INFO", "opsportal.health")
    assert first["message"] == "Probe round: 3 services in 0.12 s, overall healthy"
    assert dt.datetime.fromisoformat(first["time"]).tzinfo is not None


@pytest.mark.system
def test_it_refuses_an_unknown_log_format_naming_the_variable(tmp_path):
    done = python(tmp_path, "import django; django.setup()", LOG_FORMAT="xml")
    assert done.returncode != 0
    assert "LOG_FORMAT" in done.stderr


def test_it_puts_exceptions_into_the_json_entry():
    try:
        raise ValueError("bad value")
    except ValueError:
        record = logging.LogRecord("opsportal.health", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed: x"
    assert "ValueError: bad value" in entry["exc_info"]


def test_it_rotates_daily_and_keeps_the_retention_days(tmp_path):
    spec = dict(build_logging(tmp_path, retention_days=3)["handlers"]["system_file"])
    assert (spec.pop("class"), spec.pop("formatter")) == ("logging.handlers.TimedRotatingFileHandler", "human")
    assert spec["when"] == "midnight"
    logger = logging.getLogger("tests.rotation")
    logger.propagate = False
    with time_machine.travel(dt.datetime(2026, 3, 1, 12, 0), tick=False) as traveller:
        handler = TimedRotatingFileHandler(**spec)
        handler.setFormatter(logging.Formatter(HUMAN_FORMAT, HUMAN_DATEFMT))
        logger.addHandler(handler)
        try:
            for day in range(6):
                logger.warning("day %d", day)
                traveller.shift(dt.timedelta(days=1))
            logger.warning("today")
        finally:
            logger.removeHandler(handler)
            handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "system-monitor.log",
        "system-monitor.log.2026-03-04",
        "system-monitor.log.2026-03-05",
        "system-monitor.log.2026-03-06",
    ]
    assert (tmp_path / "system-monitor.log").read_text().endswith("] [WARNING] today\n")
    assert (tmp_path / "system-monitor.log.2026-03-06").read_text().endswith("] [WARNING] day 5\n")


@pytest.mark.system
@pytest.mark.parametrize("log_format", ["human", "json"])
def test_it_keeps_secrets_out_of_every_log_of_a_real_run(tmp_path, make_http_server, log_format):
    api_secret, hook_secret = "api-Zq8-sEcReT-1", "hook-Yp7-sEcReT-2"
    target, hook = make_http_server(), make_http_server()
    target.reply = Reply(status=500, body=f"denied for token {api_secret}")  # a target that echoes the secret
    hook.reply = Reply(status=403, body=f"bad token {hook_secret}")
    config = tmp_path / "portal.toml"
    config.write_text(
        f"""
[[service]]
name = "api"
kind = "http"
url = "{target.url}/health?token=${{API_TOKEN}}"
headers = {{Authorization = "Bearer ${{API_TOKEN}}"}}
failure_threshold = 1

[[channel]]
name = "ops"
url = "json://user:${{HOOK_TOKEN}}@127.0.0.1:{hook.port}/hook/${{HOOK_TOKEN}}"
"""
    )
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "API_TOKEN": api_secret,
        "HOOK_TOKEN": hook_secret,
        "LOG_FORMAT": log_format,
        "LOG_LEVEL": "DEBUG",
        "NOTIFY_MAX_ATTEMPTS": "1",
        "AUTO_RECOVERY_ENABLED": "false",
    }
    outputs = []
    for argv in (
        ["migrate", "--noinput", "-v", "0"],
        ["importconfig", str(config)],
        ["runprobes", "--no-recover"],
        ["runprobes", "--no-recover", "--json"],
        ["shell", "-c", "from notify.outbox import process_outbox; print(process_outbox())"],
    ):
        done = subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=BASE_DIR,
            env=environment(tmp_path, **env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode in (0, 2), done.stderr
        outputs += [done.stdout, done.stderr]
    # The run did reach the secrets: the target and the webhook both received them.
    assert any(api_secret in r["path"] for r in target.requests)
    assert any(hook_secret in r["path"] for r in hook.requests)
    assert "1 failed" in outputs[-2]
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").iterdir()}
    assert "Incident opened for api" in logs["system-monitor.log"]
    assert "Notification incident_opened to ops failed after 1 attempts" in logs["system-monitor.log"]
    for text in [*logs.values(), *outputs]:
        for secret in (api_secret, hook_secret):
            assert secret not in text
