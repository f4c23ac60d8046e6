"""Tunnel claims: one checker per tunnel, one check per due time (core.claims), and how long a claim lasts."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from django.db.models import Q

from core import claims
from core.cadence import next_due
from core.db import DB_ERRORS, run_db
from tunnels.models import Tunnel
from tunnels.spec import TUNNEL_KEYS

log = logging.getLogger("opsportal.tunnels")

STOP_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL after this
READY_TIMEOUT = 5.0  # the metrics server is local: a slow answer is itself a bad sign
PUBLIC_TIMEOUT = 10.0


def bounded(tunnel: Tunnel, name: str) -> float:
    """The tunnel's wait `name` (startup_timeout, settle_seconds) within its key's bounds: a row stored
    before the bounds (or by other means) may hold 1e9 or inf, which would hold the check, its claim and
    the watchdog's thread for ever (no except clause ends a hang). Not a number: the key's default."""
    key = TUNNEL_KEYS[name]
    value = float(getattr(tunnel, name))
    if math.isnan(value):
        value = float(key.default)
    high = float(key.maximum) if key.maximum is not None else math.inf
    return min(max(value, float(key.minimum or 0)), high)


def claim_ttl(tunnel: Tunnel) -> timedelta:
    """After this long a claim is presumed abandoned (its process died mid-check)."""
    waits = bounded(tunnel, "startup_timeout") + bounded(tunnel, "settle_seconds")
    longest = waits + STOP_GRACE_SECONDS * 2 + READY_TIMEOUT + PUBLIC_TIMEOUT
    return timedelta(seconds=longest + 60)


def claim(tunnel: Tunnel, now: datetime, *, due: bool) -> datetime | None:
    """Take the tunnel with one conditional UPDATE; returns the claim stamp, or None when taken.

    With `due`, the UPDATE also requires next_due_at to be the value this process read, so two
    processes never check the same tunnel for one due time.
    """
    free = Q(running_since__isnull=True) | Q(running_since__lt=now - claim_ttl(tunnel))
    # The next check counts from the due time (core.cadence: no drift); a check on request, from now.
    booked = next_due(tunnel.next_due_at if due and tunnel.next_due_at else now, tunnel.check_interval, now)
    taken = claims.claim(
        Tunnel.objects.filter(pk=tunnel.pk, enabled=True),
        read={"next_due_at": tunnel.next_due_at} if due else {},
        values={"running_since": now, "next_due_at": booked},
        where=free,
    )
    return now if taken else None


def release(tunnel: Tunnel, stamp: datetime, elapsed: float) -> None:
    """Drop our claim; a check that outlasted its interval pushes the next one past its own end."""
    values: dict = {"running_since": None}
    if elapsed > tunnel.check_interval:
        values["next_due_at"] = stamp + timedelta(seconds=elapsed)
    try:
        run_db(lambda: Tunnel.objects.filter(pk=tunnel.pk, running_since=stamp).update(**values))
    except DB_ERRORS as exc:
        # The claim goes stale after claim_ttl and is taken again: nothing is lost by leaving it.
        log.warning("[%s] Could not release the watchdog claim (%s)", tunnel.name, type(exc).__name__)
