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
import copy
import fcntl
import json
import logging
import math
import os
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import requests
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from health.models import Event
from health.probes.base import ProbeError
from health.probes.http import HttpProbe, session
from health.scheduler import next_due
from opsportal import procs
from opsportal.db import CircuitBreakerError, is_transient, run_db
from opsportal.spec import ConfigError, expand_env, scrub
from opsportal.spool import create_or_spool, replay_pending, update_or_spool
from tunnels.models import Tunnel, TunnelEvent
from tunnels.spec import TUNNEL_KEYS

log = logging.getLogger("opsportal.tunnels")

STOP_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL after this
READY_TIMEOUT = 5.0  # the metrics server is local: a slow answer is itself a bad sign
PUBLIC_TIMEOUT = 10.0
READY_BODY_LIMIT = 65536
STARTUP_POLL_SECONDS = 0.2
RECOVERY_CLAIM_WAIT = 10.0  # how long restart_for_recovery waits for a running check to finish

Kind = TunnelEvent.Kind
Status = Tunnel.Status

# A restart without a live recorded connector stops what process_match finds, at most this many (a tunnel
# is one connector): past it nothing is stopped nor started, and the restart_failed event names them.
MAX_MATCHES = 1
# The row fields a check writes (its state); claim fields (running_since, next_due_at) are not among them.
STATE_FIELDS = Tunnel.STATE_FIELDS
DB_ERRORS = (DatabaseError, CircuitBreakerError)


@dataclass
class CheckResult:
    tunnel: str
    status: str
    pid: int | None = None
    detail: str = ""
    events: list[str] = field(default_factory=list)

    @property
    def restarted(self) -> bool:
        return Kind.RESTARTED in self.events

    @property
    def routine(self) -> bool:
        """A healthy check, or one more check while restarts stay suppressed: nothing new to tell."""
        if self.status == Status.SUPPRESSED:
            return Kind.RESTART_SUPPRESSED not in self.events
        return self.events == [Kind.CHECK_OK]

    def summary(self) -> str:
        pid = f" (PID: {self.pid})" if self.pid else ""
        return f"{self.tunnel}: {self.status}{pid} - {self.detail}"


# --- claims: one checker per tunnel, one check per due time ---------------------------------


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
    rows = Tunnel.objects.filter(free, pk=tunnel.pk, enabled=True)
    if due:
        rows = rows.filter(next_due_at=tunnel.next_due_at) if tunnel.next_due_at else rows.filter(next_due_at=None)
    taken = rows.update(running_since=now, next_due_at=now + timedelta(seconds=tunnel.check_interval))
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
        if isinstance(exc, DatabaseError) and not is_transient(exc):
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
                _memory_due(tunnel, now + timedelta(seconds=tunnel.check_interval))
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

    Touches no database: events and row state are spooled (opsportal.spool), restarts are limited
    from memory. Run it where run_due runs (one at a time per dispatcher, in its thread): a
    restart can take `startup_timeout`. Another process of this host checking a tunnel at the same
    time is excluded by the host claim (see the module docstring).
    """
    with _memory_lock:
        due = [m for m in _memory.values() if m.due <= now]
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
            with _memory_lock:  # checked by another process of this host: follow its schedule
                m.due = ledger.checked_at + timedelta(seconds=tunnel.check_interval)
            return None
        with _memory_lock:
            ledger.merge_into(m)
        try:
            result = Check(tunnel, outage=True).run()
        except Exception as exc:
            log.exception("[%s] Watchdog check crashed", tunnel.name)
            result = CheckResult(tunnel.name, Status.UNKNOWN, detail=f"internal error: {type(exc).__name__}")
        with _memory_lock:
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
        time.sleep(STARTUP_POLL_SECONDS)
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


# --- memory for an outage, and the host claim ------------------------------------------------


@dataclass
class Remembered:
    """What this process knows of a tunnel when the database cannot tell it."""

    tunnel: Tunnel  # a private copy of the row as last read, updated by every check
    due: datetime  # the next check on this process's clock
    restarts: set[datetime] = field(default_factory=set)  # restart attempts (the database's and this host's)
    suppressed_at: datetime | None = None  # the last restart_suppressed event

    def restarts_in_window(self, now: datetime) -> int:
        return sum(1 for at in self.restarts if at > now - Tunnel.RESTART_WINDOW)

    def prune(self, now: datetime) -> None:
        self.restarts = {at for at in self.restarts if at > now - Tunnel.RESTART_WINDOW}


_memory: dict[int, Remembered] = {}
_memory_lock = threading.Lock()
# run_due runs every dispatcher pass (~1 s): the rolling hour's restarts are re-read at most this often
# (the dispatcher's own memory refreshes as often), or at once for a tunnel memory does not know yet.
EVENTS_REFRESH_S = 30.0
_events_read_at = -math.inf


def _identity(tunnel: Tunnel) -> str:
    # A deleted and re-created tunnel (or a test database's reused pk) is another tunnel.
    return f"{tunnel.name}.{int(tunnel.created_at.timestamp() * 1_000_000)}" if tunnel.created_at else tunnel.name


def remember(tunnels: list[Tunnel], now: datetime, *, complete: bool) -> None:
    """Note the tunnels just read and the restart attempts of their rolling hour (one query, at most
    every EVENTS_REFRESH_S unless a tunnel is new to memory).

    The database's restarts are united with those already known, so a restart whose event is still
    in the spool keeps counting. With `complete`, tunnels no longer enabled are forgotten.
    """
    global _events_read_at
    seen: dict[int, list[tuple[str, datetime]]] = {}
    with _memory_lock:
        unknown = any(remembered_unlocked(t) is None for t in tunnels)
    if unknown or time.monotonic() - _events_read_at > EVENTS_REFRESH_S:
        since = timezone.now() - Tunnel.RESTART_WINDOW
        kinds = (*TunnelEvent.RESTART_KINDS, Kind.RESTART_SUPPRESSED)
        rows = TunnelEvent.objects.filter(tunnel__in=tunnels, kind__in=kinds, created_at__gt=since)
        for tunnel_id, kind, at in rows.values_list("tunnel_id", "kind", "created_at"):
            seen.setdefault(tunnel_id, []).append((kind, at))
        _events_read_at = time.monotonic()
    with _memory_lock:
        if complete:
            for pk in set(_memory) - {t.pk for t in tunnels}:
                del _memory[pk]
        for t in tunnels:
            m = _memory.get(t.pk)
            if m is None or _identity(m.tunnel) != _identity(t):
                m = _memory[t.pk] = Remembered(copy.copy(t), t.next_due_at or now)
            m.tunnel, m.due = copy.copy(t), t.next_due_at or now
            for kind, at in seen.get(t.pk, []):
                if kind == Kind.RESTART_SUPPRESSED:
                    m.suppressed_at = max(at, m.suppressed_at) if m.suppressed_at else at
                else:
                    m.restarts.add(at)
            m.prune(now)


def forget() -> None:
    """Drop everything remembered (tests)."""
    global _events_read_at
    with _memory_lock:
        _memory.clear()
        _events_read_at = -math.inf


def remembered_unlocked(tunnel: Tunnel) -> Remembered | None:
    m = _memory.get(tunnel.pk)
    return m if m is not None and _identity(m.tunnel) == _identity(tunnel) else None


def remembered(tunnel: Tunnel) -> Remembered | None:
    with _memory_lock:
        return remembered_unlocked(tunnel)


def _memory_due(tunnel: Tunnel, due: datetime) -> None:
    with _memory_lock:
        if tunnel.pk in _memory:
            _memory[tunnel.pk].due = due


def _ledger_dir() -> Path:
    return Path(settings.VAR_DIR) / "tunnels"


@contextlib.contextmanager
def host_claim(tunnel: Tunnel, *, wait: float = 0.0) -> Iterator[bool]:
    """The tunnel's host-local claim: an exclusive file lock, held for the check. Yields False when taken.

    flock locks an open file, so it excludes threads of this process as well as other processes.
    """
    directory = _ledger_dir()
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    with open(directory / f"{_identity(tunnel)}.lock", "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(STARTUP_POLL_SECONDS)
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Ledger:
    """What the outage checkers of this host share (VAR_DIR/tunnels/<tunnel>.json), read and written under
    the host claim: the last check, restart attempts of the hour, the last suppression notice and the pid."""

    checked_at: datetime | None = None
    restarts: list[datetime] = field(default_factory=list)
    suppressed_at: datetime | None = None
    pid: int | None = None
    pid_create_time: float | None = None

    @classmethod
    def read(cls, tunnel: Tunnel) -> Ledger:
        try:
            raw: dict[str, Any] = json.loads((_ledger_dir() / f"{_identity(tunnel)}.json").read_text())
        except (OSError, ValueError):
            return cls()

        def when(value: Any) -> datetime | None:
            return parse_datetime(value) if isinstance(value, str) else None

        return cls(
            checked_at=when(raw.get("checkedAt")),
            restarts=[at for at in map(when, raw.get("restarts", [])) if at is not None],
            suppressed_at=when(raw.get("suppressedAt")),
            pid=raw.get("pid"),
            pid_create_time=raw.get("pidCreateTime"),
        )

    @classmethod
    def of(cls, m: Remembered, *, checked_at: datetime) -> Ledger:
        t = m.tunnel
        return cls(checked_at, sorted(m.restarts), m.suppressed_at, t.pid, t.pid_create_time)

    def merge_into(self, m: Remembered) -> None:
        """Take in what another process of this host did during the outage (caller holds _memory_lock)."""
        m.restarts.update(self.restarts)
        if self.suppressed_at and (m.suppressed_at is None or self.suppressed_at > m.suppressed_at):
            m.suppressed_at = self.suppressed_at
        t = m.tunnel
        if self.pid and self.checked_at and (t.last_checked_at is None or self.checked_at > t.last_checked_at):
            t.pid, t.pid_create_time = self.pid, self.pid_create_time  # the connector it started

    def write(self, tunnel: Tunnel) -> None:
        path = _ledger_dir() / f"{_identity(tunnel)}.json"
        data = {
            "checkedAt": self.checked_at.isoformat() if self.checked_at else None,
            "restarts": [at.isoformat() for at in self.restarts],
            "suppressedAt": self.suppressed_at.isoformat() if self.suppressed_at else None,
            "pid": self.pid,
            "pidCreateTime": self.pid_create_time,
        }
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


# --- the check -------------------------------------------------------------------------------


def reap_started(timeout: float = 1.0) -> None:
    """Wait until the connectors this process started that have exited are reaped.

    procs.start_detached reaps every process it starts by itself, the moment it exits (by pid, never
    waitpid(-1)): one mechanism for connectors and restarted services. This only waits to see it done.
    """
    procs.reap_exited(timeout)


def ready_state(url: str) -> tuple[bool, int | None, str]:
    """(ready, readyConnections, detail) of a connector's ready endpoint."""
    try:
        with session().get(url, timeout=(READY_TIMEOUT, READY_TIMEOUT), stream=True) as response:
            body = response.raw.read(READY_BODY_LIMIT, decode_content=True)
            status = response.status_code
    except requests.exceptions.Timeout:
        return False, None, f"ready endpoint: no answer within {READY_TIMEOUT:g} s"
    except requests.exceptions.RequestException as exc:
        return False, None, f"ready endpoint unreachable ({type(exc).__name__})"
    connections = None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        connections = max(0, int(json.loads(body).get("readyConnections")))
    shown = f"HTTP {status}" + (f", readyConnections {connections}" if connections is not None else "")
    if status != 200 or (connections is not None and connections < 1):
        return False, connections, f"not ready: {shown}"
    return True, connections, shown


class Check:
    """One check (and maybe a restart) of one tunnel; the caller holds the tunnel's claim.

    With `outage`, no database is touched: the hourly limit is counted from memory and every write
    is spooled after one fast try. Without it, a write that fails transiently is spooled too.
    """

    def __init__(self, tunnel: Tunnel, *, outage: bool = False) -> None:
        self.t = tunnel
        self.outage = outage
        self.previous = tunnel.status
        self.events: list[str] = []
        self.secrets: list[str] = []

    # -- recording
    def event(self, kind: str, detail: str, pid: int | None = None) -> None:
        detail = scrub(detail, self.secrets)[:500]
        at = timezone.now()
        # Its own time, so a spooled event is replayed in its place in the tunnel's history and hour.
        fields = {"tunnel_id": self.t.pk, "kind": kind, "pid": pid, "detail": detail, "created_at": at}
        create_or_spool("tunnels.TunnelEvent", retry=not self.outage, **fields)
        self.events.append(kind)
        if kind in TunnelEvent.RESTART_KINDS or kind == Kind.RESTART_SUPPRESSED:
            with _memory_lock:
                m = _memory.get(self.t.pk)
                if m is not None and _identity(m.tunnel) == _identity(self.t):
                    if kind == Kind.RESTART_SUPPRESSED:
                        m.suppressed_at = at
                    else:
                        m.restarts.add(at)

    def notify(self, kind: str, title: str, body: str, **data: Any) -> None:
        """An outbox Event, spooled like the tunnel's own events."""
        Event.emit_or_spool(kind, title, retry=not self.outage, subject=self.t.name, body=body, **data)

    def restarts_used(self) -> int:
        """Restart attempts in the rolling hour: the database's count, or memory's when it is higher
        (a restart still in the spool) or the database cannot answer."""
        m = remembered(self.t)
        known = m.restarts_in_window(timezone.now()) if m is not None else 0
        if self.outage:
            return known
        try:
            return max(known, run_db(self.t.restarts_in_window, retry=False))
        except DB_ERRORS:
            return known

    def suppression_notified(self) -> bool:
        m = remembered(self.t)
        since = timezone.now() - Tunnel.RESTART_WINDOW
        if m is not None and m.suppressed_at is not None and m.suppressed_at > since:
            return True
        if self.outage:
            return False
        try:
            return run_db(self.t.suppression_notified, retry=False)
        except DB_ERRORS:
            return False

    def say(self, level: int, message: str, *args: object) -> None:
        log.log(level, "[%s] " + message, self.t.name, *args)

    def alarm(self, message: str, *args: object) -> None:
        # Once restarts are suppressed the notice has been given: repeats go to DEBUG.
        self.say(logging.DEBUG if self.previous == Status.SUPPRESSED else logging.WARNING, message, *args)

    def steady(self, message: str, *args: object) -> None:
        # Healthy lines only when the state changes, so a healthy tunnel does not flood the log.
        self.say(logging.INFO if self.previous != Status.UP else logging.DEBUG, message, *args)

    def save(self, status: str, detail: str) -> CheckResult:
        t = self.t
        t.status = status
        t.last_detail = scrub(detail, self.secrets)[:500]
        t.last_checked_at = t.updated_at = timezone.now()
        # An UPDATE of the state fields only (never the claim's); spooled as an `update` record when
        # the database cannot take it, so the first check after an outage knows the connector it started.
        values = {name: getattr(t, name) for name in (*STATE_FIELDS, "updated_at")}
        update_or_spool("tunnels.Tunnel", t.pk, values, retry=not self.outage)
        with _memory_lock:
            m = _memory.get(t.pk)
            if m is not None and _identity(m.tunnel) == _identity(t) and m.tunnel is not t:
                for name in (*STATE_FIELDS, "updated_at"):
                    setattr(m.tunnel, name, getattr(t, name))
        return CheckResult(t.name, status, t.pid, t.last_detail, self.events)

    # -- the three layers
    def process(self) -> psutil.Process | None:
        t = self.t
        if t.pid and t.pid_create_time is not None:
            proc = procs.ProcRef(t.pid, t.pid_create_time).process()
            if proc is not None:
                return proc
        if t.process_match:
            found = self.matches()
            with contextlib.suppress(psutil.NoSuchProcess):
                if found:
                    return min(found, key=lambda p: p.create_time())
        return None

    def matches(self) -> list[psutil.Process]:
        """What process_match finds (whole argv elements, never the portal's own processes)."""
        try:
            return procs.find_processes(cmdline_contains=self.t.process_match)
        except ValueError as exc:  # importconfig refuses it; a row saved by other means may still hold one
            raise ConfigError("process_match", str(exc)) from None

    def run(self) -> CheckResult:
        t = self.t
        try:
            proc = self.process()
        except ConfigError as exc:
            detail = f"config error: {exc}"
            # Said once, when it becomes the tunnel's state; the row keeps saying it every check.
            self.say(logging.ERROR if t.last_detail != detail else logging.DEBUG, "Cannot find the connector: %s", exc)
            return self.save(Status.DOWN, detail)
        if proc is None:
            t.pid = t.pid_create_time = t.ready_connections = None
            self.event(Kind.PROCESS_MISSING, "tunnel process not running")
            self.alarm("Tunnel process not running")
            return self.restart_and_save("process not running")
        ref = procs.ProcRef.of(proc)
        t.pid, t.pid_create_time = ref.pid, ref.create_time
        self.steady("Tunnel process running (PID: %s)", ref.pid)

        if t.ready_url:
            ready, connections, detail = ready_state(t.ready_url)
            t.ready_connections = connections
            if not ready:
                t.consecutive_ready_failures += 1
                count = f"{t.consecutive_ready_failures}/{t.ready_failure_threshold}"
                self.event(Kind.NOT_READY, f"{detail} ({count})", ref.pid)
                self.alarm("Tunnel connector %s (%s)", detail, count)
                if t.consecutive_ready_failures >= t.ready_failure_threshold:
                    return self.restart_and_save(f"connector {detail}, {count} checks")
                return self.save(Status.NOT_READY, f"{detail} ({count})")
            t.consecutive_ready_failures = 0
            self.steady("Tunnel connector ready (readyConnections: %s)", connections)

        if t.public_url:
            ok, detail = self.public_check()
            if not ok:
                self.event(Kind.ORIGIN_UNREACHABLE, detail, ref.pid)
                self.say(logging.WARNING, "Public URL failed while the connector is ready (not restarting): %s", detail)
                return self.save(Status.UP, f"origin unreachable: {detail}")
            self.steady("Tunnel connectivity OK (%s)", detail)

        detail = f"running (PID: {ref.pid})" + (f", readyConnections {t.ready_connections}" if t.ready_url else "")
        self.event(Kind.CHECK_OK, detail, ref.pid)
        return self.save(Status.UP, detail)

    def public_check(self) -> tuple[bool, str]:
        statuses = list(range(200, 400))
        try:
            probe = HttpProbe(
                {"url": self.t.public_url, "follow_redirects": False, "expect_status": statuses},
                timeout=PUBLIC_TIMEOUT,
                service_name=self.t.name,
            )
            try:
                outcome = probe.run()
            finally:
                self.secrets.extend(probe.secrets)
        except ProbeError as exc:
            return False, str(exc)
        return True, outcome.detail or "answered"

    # -- restart
    def restart_and_save(self, reason: str) -> CheckResult:
        t = self.t
        used = self.restarts_used()
        if used >= t.max_restarts_per_hour:
            return self.suppress(used, reason)
        self.say(logging.INFO, "Starting tunnel (%s)...", reason)
        try:
            refused = self.stop_existing()
        except ConfigError as exc:
            return self.failed(Status.DOWN, f"config error: {exc}", None)
        if refused:
            return self.failed(Status.DOWN, refused, None)
        t.pid = t.pid_create_time = t.ready_connections = None
        t.consecutive_ready_failures = 0
        t.last_restart_at = timezone.now()
        try:
            # The portal's own secrets are refused by name: a connector never gets them.
            argv = [expand_env(arg, self.secrets, refused=procs.PORTAL_ONLY_ENV) for arg in t.command]
            # A token goes to the connector in its environment (TUNNEL_TOKEN), out of sight of `ps`.
            env = {k: expand_env(v, self.secrets, refused=procs.PORTAL_ONLY_ENV) for k, v in (t.env or {}).items()}
            ref = procs.start_detached(argv, log_file=self.log_file(), env=env)
        except (ConfigError, OSError) as exc:
            return self.failed(Status.DOWN, f"could not start the connector: {exc}", None)
        settle = bounded(t, "settle_seconds")
        if not procs.alive_after(ref, settle):
            return self.failed(Status.DOWN, f"connector exited within {settle:g} s of starting", ref.pid)
        t.pid, t.pid_create_time = ref.pid, ref.create_time
        if t.ready_url:
            ready, detail = self.wait_ready(ref)
            if not ready:
                alive = ref.alive()
                if not alive:
                    t.pid = t.pid_create_time = None
                return self.failed(Status.NOT_READY if alive else Status.DOWN, detail, ref.pid)
        detail = f"restarted ({reason}): PID {ref.pid}" + (
            f", readyConnections {t.ready_connections}" if t.ready_url else ""
        )
        self.event(Kind.RESTARTED, detail, ref.pid)
        self.notify(Event.Kind.TUNNEL_RESTARTED, f"Tunnel {t.name} restarted", detail, pid=ref.pid)
        self.say(logging.INFO, "Tunnel started successfully (PID: %s)", ref.pid)
        return self.save(Status.UP, detail)

    def wait_ready(self, ref: procs.ProcRef) -> tuple[bool, str]:
        startup_timeout = bounded(self.t, "startup_timeout")
        deadline = time.monotonic() + startup_timeout
        detail = "no answer yet"
        while True:
            if not ref.alive():
                return False, f"connector exited before becoming ready ({detail})"
            ready, self.t.ready_connections, detail = ready_state(self.t.ready_url)
            if ready:
                return True, detail
            if time.monotonic() >= deadline:
                return False, f"connector not ready within {startup_timeout:g} s ({detail})"
            time.sleep(STARTUP_POLL_SECONDS)

    def failed(self, status: str, detail: str, pid: int | None) -> CheckResult:
        self.event(Kind.RESTART_FAILED, detail, pid)
        self.say(logging.ERROR, "Tunnel restart failed: %s", scrub(detail, self.secrets))
        return self.save(status, f"restart failed: {detail}")

    def suppress(self, used: int, reason: str) -> CheckResult:
        t = self.t
        detail = f"restart suppressed ({reason}): {used} restarts in the last hour (max {t.max_restarts_per_hour})"
        if self.suppression_notified():
            # Told once an hour, not on every check.
            self.say(logging.DEBUG, "Restart still suppressed: %s", detail)
        else:
            self.event(Kind.RESTART_SUPPRESSED, detail, t.pid)
            self.notify(
                Event.Kind.TUNNEL_RESTART_SUPPRESSED,
                f"Tunnel {t.name}: restarts suppressed",
                detail,
                restarts_last_hour=used,
                max_restarts_per_hour=t.max_restarts_per_hour,
            )
            self.say(logging.WARNING, "Max restarts reached: %s", detail)
        return self.save(Status.SUPPRESSED, detail)

    def stop_existing(self) -> str | None:
        """Stop the connector before a restart; the refusal's detail when it will not.

        The connector the row records (pid + create time), alone, when it is alive: another process whose
        argv also matches (an operator's copy, a wrapper) is not the connector. Else what process_match
        finds, at most MAX_MATCHES; past it nothing is stopped, and the refusal names what would have been.
        stop() never waits on a zombie, and what a watchdog started is reaped by its starter (procs).
        """
        t = self.t
        known = procs.ProcRef(t.pid, t.pid_create_time).process() if t.pid and t.pid_create_time is not None else None
        targets = [known] if known is not None else self.matches() if t.process_match else []
        if len(targets) > MAX_MATCHES:
            return self.refusal(targets)
        if targets:
            self.say(logging.INFO, "Stopping tunnel process (PID: %s)", ", ".join(str(p.pid) for p in targets))
            procs.stop(targets, grace=STOP_GRACE_SECONDS)
        return None

    def refusal(self, found: list[psutil.Process]) -> str:
        shown = []
        for proc in found:
            try:
                shown.append(f"pid {proc.pid} ({proc.name()})")
            except psutil.Error:
                shown.append(f"pid {proc.pid}")
        return (
            f"refused: {len(found)} processes match process_match {self.t.process_match!r} (at most {MAX_MATCHES});"
            f" would have stopped {', '.join(shown)}; nothing stopped or started"
        )

    def log_file(self) -> str:
        return self.t.log_file or str(settings.LOG_DIR / f"tunnel-{self.t.name}.log")
