"""The LOGGING dict and the JSON formatter (LOG_FORMAT=json).

human: `[2025-12-17 14:30:00] [INFO] message`, as the old monitors wrote, on the console, in
`system-monitor.log` (probe rounds, recoveries, retention, notifications, the outage spool) and
`tunnel-monitor.log` (the watchdog). json: the same handlers, one JSON object per line, for log
shippers. Files rotate
at midnight and keep LOG_RETENTION_DAYS old files. apprise's own logger is silenced: its messages
may quote a webhook URL with its token; notify.outbox stores a scrubbed copy of the error instead.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

HUMAN_FORMAT = "[%(asctime)s] [%(levelname)s] %(message)s"
HUMAN_DATEFMT = "%Y-%m-%d %H:%M:%S"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message (and exc_info)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def build_logging(log_dir: Path, *, fmt: str = "human", level: str = "INFO", retention_days: int = 7) -> dict:
    """The LOGGING setting for a log directory and format ("human" or "json")."""
    if fmt not in ("human", "json"):
        raise ValueError(f"LOG_FORMAT: must be human or json, not {fmt!r}")

    def rotating(name: str) -> dict[str, Any]:
        return {
            "class": "logging.handlers.TimedRotatingFileHandler",
            "filename": str(log_dir / name),
            "when": "midnight",
            "backupCount": retention_days,
            "delay": True,
            "encoding": "utf-8",
            "formatter": fmt,
        }

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            # The old monitors' format: `[2025-12-17 14:30:00] [INFO] message`.
            "human": {"format": HUMAN_FORMAT, "datefmt": HUMAN_DATEFMT},
            "json": {"()": JsonFormatter},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": fmt},
            "system_file": rotating("system-monitor.log"),
            "tunnel_file": rotating("tunnel-monitor.log"),
            "null": {"class": "logging.NullHandler"},
        },
        "loggers": {
            "opsportal": {"handlers": ["console"], "level": level, "propagate": False},
            "opsportal.health": {"handlers": ["system_file"], "propagate": True},
            "opsportal.recovery": {"handlers": ["system_file"], "propagate": True},
            "opsportal.scheduler": {"handlers": ["system_file"], "propagate": True},
            "opsportal.db": {"handlers": ["system_file"], "propagate": True},
            # The outage spool: what was spooled, replayed or dropped belongs with the rounds it concerns.
            "opsportal.spool": {"handlers": ["system_file"], "propagate": True},
            "opsportal.tunnels": {"handlers": ["tunnel_file"], "propagate": True},
            "django": {"handlers": ["console"], "level": "WARNING"},
            "apprise": {"handlers": ["null"], "propagate": False},
        },
    }
