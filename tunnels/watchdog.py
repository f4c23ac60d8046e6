"""The tunnel watchdog: process alive -> connector ready -> public URL, and rate-limited restarts.

One check of a tunnel, with its claim held:
  (a) the process: the pid the row records (pid + create time: the connector a watchdog started or
      last found; a zombie is dead), else the oldest process whose argv holds `process_match` as whole
      consecutive elements (procs.split_pattern, procs.argv_matches), never the portal's own;
  (b) `ready_url` (cloudflared's metrics `/ready`): 200 with `readyConnections` >= 1;
  (c) `public_url`: 2xx/3xx.
A restart happens when (a) fails or (b) fails `ready_failure_threshold` times in a row, at
most `max_restarts_per_hour` in any rolling hour (counted from TunnelEvent rows, so the limit
holds across processes and restarts of the portal). (c) failing while (b) is fine is the
origin's fault: recorded as `origin_unreachable`, never "fixed" by a restart.

Entry points: `run_due()` (the scheduler and `watchtunnels`), `run_due_outage()` (the scheduler
while the database is away), `check_now()` (`watchtunnels --once/--interval`, the admin),
`restart_for_recovery()` (the `restart_tunnel` recovery action) and `restart()` (the admin).

Outage mode: `run_due` remembers, in this process, the tunnels it last read, their check schedule
and the restart attempts of the rolling hour (the database's at the last read, plus this host's).
`run_due_outage` checks the remembered tunnels due on this process's own clock without the
database: a dead or hung connector is restarted as usual, the hourly limit is counted from that
memory, and events and the row's state go through the outage spool (`create_or_spool`,
`update_or_spool`), replayed in order once the database is back. No database claim is possible
then, so a host-local file lock plus a small ledger (VAR_DIR/tunnels/) stands in for it: two
processes of one host (overlapping dispatcher loops, two qclusters) never check one tunnel at once,
a tunnel checked by one of them within half its interval is not checked again by the other, and
restarts made by either during the outage count against the same limit. Connectors are local
processes, so a host-local claim is the right scope. Every write of a check (also with the
database up) goes to the spool on a transient error instead of being lost.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from datetime import datetime, timedelta
from pathlib import Path

from django.utils import timezone

from core.cadence import next_due
from core.db import DB_ERRORS, run_db, unavailable
from core.spool import replay_pending
from tunnels.check import Check, CheckResult, Status
from tunnels.claims import claim, release
from tunnels.memory import MEMORY, MEMORY_LOCK, Ledger, Remembered, host_claim, memory_due, remember
from tunnels.models import Tunnel

log = logging.getLogger("opsportal.tunnels")

RECOVERY_CLAIM_WAIT = 10.0  # how long restart_for_recovery waits for a running check to finish
CLAIM_POLL_SECONDS = 0.2


def run_due(now: datetime | None = None, *, names: list[str] | None = None) -> list[CheckResult]:
    """Claim every enabled tunnel whose check is due at `now` and check each once.

    `now` decides what is due and stamps the claims; events and the rolling hour use the
    clock at the moment they happen. Every enabled tunnel read is remembered for run_due_outage.
    """
    now = now or timezone.now()
    try:
        # Spooled rows first: the first check after an outage must see the pid of a connector started in it.
        replay_pending()
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        log.warning("Tunnel watchdog: database unwritable (%s); checking from memory", type(exc).__name__)
        return run_due_outage(now)
    tunnels = Tunnel.objects.filter(enabled=True)
    if names:
        tunnels = tunnels.filter(name__in=names)
    tunnels = list(tunnels)
    remember(tunnels, now, complete=not names)
    results = []
    for tunnel in tunnels:
        if tunnel.next_due_at is not None and tunnel.next_due_at > now:
            continue
        try:
            stamp = claim(tunnel, now, due=True)
            if stamp is not None:
                memory_due(tunnel, next_due(tunnel.next_due_at or now, tunnel.check_interval, now))
                result = _check_claimed(tunnel, stamp)
                if result is not None:
                    results.append(result)
        except DB_ERRORS:
            raise  # the database's trouble is the whole pass's: its caller checks from memory
        except Exception as exc:  # one tunnel's bad value or bug never stops the others' checks
            results.append(_crashed(tunnel, exc))
    return results


def _crashed(tunnel: Tunnel, exc: Exception) -> CheckResult:
    """Log a check that raised outside Check.run (its claim, a value no timedelta holds) and record it
    on the tunnel's row; the pass goes on with the next tunnel."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    # The type and place only: an exception's message may quote the command's secrets.
    detail = f"internal error: {type(exc).__name__}{at}"
    log.error("[%s] Watchdog check crashed: %s", tunnel.name, detail)
    with contextlib.suppress(*DB_ERRORS):
        Tunnel.objects.filter(pk=tunnel.pk).update(
            status=Status.UNKNOWN, last_detail=detail[:500], last_checked_at=timezone.now()
        )
    return CheckResult(tunnel.name, Status.UNKNOWN, detail=detail)


def check_now(tunnel: Tunnel, now: datetime | None = None) -> CheckResult | None:
    """Check one tunnel now whatever its due time; None when another process is checking it."""
    stamp = claim(tunnel, now or timezone.now(), due=False)
    return None if stamp is None else _check_claimed(tunnel, stamp)


def _check_claimed(tunnel: Tunnel, stamp: datetime) -> CheckResult | None:
    started = time.monotonic()
    try:
        with host_claim(tunnel) as held:
            if not held:  # an outage checker of this host has it (the edge of an outage)
                return None
            try:
                run_db(tunnel.refresh_from_db)
            except DB_ERRORS as exc:  # went away since the claim: check with the row as read
                log.warning("[%s] Could not re-read the tunnel (%s)", tunnel.name, type(exc).__name__)
            try:
                return Check(tunnel).run()
            except Exception as exc:  # one broken tunnel must not stop the others
                log.exception("[%s] Watchdog check crashed", tunnel.name)
                return CheckResult(tunnel.name, Status.UNKNOWN, detail=f"internal error: {type(exc).__name__}")
    finally:
        release(tunnel, stamp, time.monotonic() - started)


def run_due_outage(now: datetime) -> list[CheckResult]:
    """While the database is away: check the remembered tunnels due on this process's clock.

    Touches no database: events and row state are spooled (core.spool), restarts are limited
    from memory. Run it where run_due runs (one at a time per dispatcher, in its thread): a
    restart can take `startup_timeout`. Another process of this host checking a tunnel at the same
    time is excluded by the host claim (see the module docstring).
    """
    with MEMORY_LOCK:
        due = [m for m in MEMORY.values() if m.due <= now]
        for m in due:
            m.due = next_due(m.due, m.tunnel.check_interval, now)  # missed slots skipped, no burst
    results = []
    for m in due:
        result = _check_outage(m, now)
        if result is not None:
            results.append(result)
    return results


def _check_outage(m: Remembered, now: datetime) -> CheckResult | None:
    tunnel = m.tunnel
    with host_claim(tunnel) as held:
        if not held:
            return None
        ledger = Ledger.read(tunnel)
        if ledger.checked_at and ledger.checked_at > now - timedelta(seconds=tunnel.check_interval / 2):
            with MEMORY_LOCK:  # checked by another process of this host: follow its schedule
                m.due = ledger.checked_at + timedelta(seconds=tunnel.check_interval)
            return None
        with MEMORY_LOCK:
            ledger.merge_into(m)
        try:
            result = Check(tunnel, outage=True).run()
        except Exception as exc:
            log.exception("[%s] Watchdog check crashed", tunnel.name)
            result = CheckResult(tunnel.name, Status.UNKNOWN, detail=f"internal error: {type(exc).__name__}")
        with MEMORY_LOCK:
            Ledger.of(m, checked_at=now).write(tunnel)
        return result


def restart_for_recovery(tunnel_name: str) -> tuple[bool, str]:
    """Restart a tunnel for the `restart_tunnel` recovery action; honours the hourly limit and the claim."""
    return restart(tunnel_name, "requested by recovery")


def restart(tunnel_name: str, reason: str) -> tuple[bool, str]:
    """Restart a tunnel on request (recovery, the admin): the same claim, hourly limit and events as a check.

    The writes of the restart (events, the row) go to the outage spool if the database goes away meanwhile.
    """
    try:
        tunnel = Tunnel.objects.get(name=tunnel_name)
    except Tunnel.DoesNotExist:
        return False, f"unknown tunnel {tunnel_name!r}"
    if not tunnel.enabled:
        return False, f"tunnel {tunnel_name} is disabled"
    deadline = time.monotonic() + RECOVERY_CLAIM_WAIT
    stamp = claim(tunnel, timezone.now(), due=False)
    while stamp is None and time.monotonic() < deadline:
        time.sleep(CLAIM_POLL_SECONDS)
        stamp = claim(tunnel, timezone.now(), due=False)
    if stamp is None:
        return False, f"tunnel {tunnel_name} is being checked by another watchdog; not restarted"
    started = time.monotonic()
    try:
        with host_claim(tunnel, wait=max(0.0, deadline - time.monotonic())) as held:
            if not held:
                return False, f"tunnel {tunnel_name} is being checked by another watchdog; not restarted"
            with contextlib.suppress(*DB_ERRORS):
                run_db(tunnel.refresh_from_db)
            result = Check(tunnel).restart_and_save(reason)
    finally:
        release(tunnel, stamp, time.monotonic() - started)
    return result.restarted, result.detail
