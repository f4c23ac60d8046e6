"""Who is alive: processes beat a heartbeat row, and a row silent for owner_dead_after() is a dead owner's.

Dispatcher loops beat `loop:<owner>` (their claims' liveness), the dispatcher's pass beats `dispatcher`
(the scheduler's liveness in /health/status), and a recovery attempt's owner beats `recovery:<owner>`.
An owner id is `host:pid:nonce` (a pid can be reused after a restart).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from core.models import SchedulerHeartbeat

# A loop beats every pass (~1 s, and every second of a long claim burst); one silent for OWNER_DEAD_S (or
# five ticks, if ticks are longer) is dead and its claims are taken over: below the shortest interval (10 s),
# so a slot held by a loop that died is still probed within it.
OWNER_DEAD_S = 6
LOOP_PREFIX = "loop:"
# Loop heartbeat rows of loops silent this long are deleted by the hourly prune.
LOOP_ROW_TTL = timedelta(hours=1)


def new_owner() -> str:
    """A process's owner identity: host, pid and a nonce."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_dead_after() -> timedelta:
    return timedelta(seconds=max(OWNER_DEAD_S, 5 * settings.DISPATCH_TICK_MS / 1000))


def beat_rows(names: tuple[str, ...], now: datetime | None = None) -> None:
    """Beat each named row (created on its first beat) with this process's host and pid."""
    now = now or timezone.now()
    host, pid = socket.gethostname()[:100], os.getpid()
    for name in names:
        updated = SchedulerHeartbeat.objects.filter(name=name).update(
            last_run_at=now, host=host, pid=pid, passes=F("passes") + 1
        )
        if not updated:
            SchedulerHeartbeat.objects.get_or_create(name=name, defaults={"last_run_at": now, "host": host, "pid": pid})


def live_owners(now: datetime) -> set[str]:
    """The loops that beat within owner_dead_after() of `now`."""
    rows = SchedulerHeartbeat.objects.filter(
        name__startswith=LOOP_PREFIX, last_run_at__gte=now - owner_dead_after()
    ).values_list("name", flat=True)
    return {name.removeprefix(LOOP_PREFIX) for name in rows}


def forget_dead_loops(now: datetime | None = None) -> int:
    """Delete the heartbeat rows of loops silent for LOOP_ROW_TTL (the hourly prune task calls it)."""
    cutoff = (now or timezone.now()) - LOOP_ROW_TTL
    return SchedulerHeartbeat.objects.filter(name__startswith=LOOP_PREFIX, last_run_at__lt=cutoff).delete()[0]
