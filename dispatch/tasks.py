"""Django-Q2 task functions: thin wrappers the schedules name (see dispatch.scheduler)."""

from __future__ import annotations

from datetime import datetime

from core.liveness import forget_dead_loops
from dispatch.scheduler import run_dispatcher, scheduler_late
from health.rollups import prune as prune_results
from notify.outbox import process_outbox


def dispatch() -> str:
    """`opsportal-dispatch`, every minute: the claim loop that probes each service at its interval."""
    return run_dispatcher()


def prune() -> str:
    """`opsportal-prune`, hourly: roll up, then drop probe results older than RAW_RETENTION_DAYS (in batches)."""
    forget_dead_loops()
    return prune_results().summary()


def notify(now: datetime | None = None) -> str:
    """`opsportal-notify`, every minute: a late scheduler becomes an event, then the outbox is delivered."""
    scheduler_late(now)
    return process_outbox(now)
