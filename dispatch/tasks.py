"""Django-Q2 task functions: thin wrappers the schedules name (see dispatch.scheduler)."""

from __future__ import annotations

import time
from datetime import datetime

from django_q.tasks import async_task

from core.liveness import forget_dead_loops
from dispatch.scheduler import NOTIFY_SCHEDULE, resident_loops, run_dispatcher, scheduler_late
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


def cluster_alive() -> bool:
    """Whether a qcluster is running to take a task now: a resident loop beats, or Django-Q2's own stats say so."""
    if resident_loops():
        return True
    try:
        from django_q.conf import Conf
        from django_q.status import Stat

        return any(stat.status in (Conf.IDLE, Conf.WORKING) for stat in Stat.get_all())
    except Exception:  # no cache: no cluster as far as we can tell
        return False


_alive_until = 0.0  # cluster_alive() is asked once per ALIVE_CACHE_S, not per committed event
ALIVE_CACHE_S = 5.0


def notify_now() -> bool:
    """notify.realtime's enqueuer (registered in DispatchConfig.ready): the notify task, queued at once for a
    live cluster. False when none is alive: the event's process then sends it itself."""
    global _alive_until
    now = time.monotonic()
    if now >= _alive_until:
        if not cluster_alive():
            return False
        _alive_until = now + ALIVE_CACHE_S
    async_task("dispatch.tasks.notify", task_name="opsportal-notify-now", group=NOTIFY_SCHEDULE)
    return True
