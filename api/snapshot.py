"""Per-process, single-flight, versioned snapshots of payloads that are costly to build.

`/health/status` and `/metrics` cost 70–90 ms of Python at 1,000 services; computed per request, 16
concurrent pollers queue behind each other (p99 in seconds, docs/performance.md). A `Snapshot` computes
such a payload at most once at a time per process and keeps it, labelled with the version of the state it
was read at.

The version is shared: `state_version()` reads it from the database per request, in ONE query of
aggregates that move with every committed change the answers show (a probe round's `last_checked_at`, an
edit's `updated_at`, a status change, an incident, a recovery attempt, a tunnel check, the scheduler's
heartbeat). A kept value is served only while the version is the one it was read at: after a commit, the
next request of every worker computes (or waits for a computation that started after it asked), so a
committed change shows in the next answer of every worker and no answer is older than one already given.
While the version holds, the value is served for `ttl` seconds, then (up to `STALE_FACTOR` × ttl) served
while one background thread recomputes what only the clock changes (the scheduler's lag, tunnel uptimes).

`cached_status()` composes `/health/status` from a snapshot of the database reads and the parts that
stay live per request (the database check, its circuit breaker, the outage spool, the timestamp).
`/metrics` does the same in `api.metrics.cached_exposition()`. `STATUS_CACHE_SECONDS` (default 2;
0 = per request) sets the ttl.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection
from django.utils import timezone

from api.base import status_payload, with_spool
from core.db import close_connections, database_status
from core.models import SchedulerHeartbeat
from dispatch.scheduler import HEARTBEAT
from health.models import DOWN, Incident, ProbeResult, Service
from recovery.models import RecoveryAttempt, RecoveryState
from tunnels.models import Tunnel, TunnelEvent

T = TypeVar("T")
log = logging.getLogger("opsportal.health.snapshot")

# A stale value is served for at most this many ttls; past it the data is too old to show, and the caller
# waits for a fresh one (also what bounds how long a failing refresh can hide behind old data).
STALE_FACTOR = 3.0


def cache_seconds() -> float:
    """STATUS_CACHE_SECONDS, read per call so a changed setting (tests) takes effect at once."""
    return float(getattr(settings, "STATUS_CACHE_SECONDS", 0))


@dataclass(frozen=True)
class _Entry(Generic[T]):
    value: T
    taken_at: float  # the clock when its computation started: the data is at least this old
    version: Hashable  # the state version read before its computation started


class _Flight:
    """One computation in progress; callers arriving meanwhile wait for its outcome instead of starting another."""

    def __init__(self, version: Hashable, started: float) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.version = version
        self.started = started  # before it read anything: its data is at least as new as this moment


class Snapshot(Generic[T]):
    """`get(version)` returns `compute()`'s value, computed at most once at a time in this process.

    A kept value is *current* for a caller when it was read at the caller's `version` (nothing changed
    since), or when its computation started after the caller asked. Then:
    - fresh (younger than `ttl`): served as it is;
    - stale (younger than `STALE_FACTOR` × ttl): served at once, and one background thread recomputes it;
    - not current, missing or older: the caller computes it, and callers arriving meanwhile wait for that
      one result. A caller never takes a computation that started before it asked and read another
      version: it waits for that one to end, then looks again (and computes, if still not current).

    A computation that raises is never kept: its error goes to the callers waiting on it (a background
    refresh only logs it and the stale value stays until the hard bound). A value `cacheable` rejects (a
    partial read) is answered to the callers of that computation and not kept either. `ttl` <= 0 computes
    on every call, as if there were no snapshot. Without a version (None) only the ttl decides.
    """

    def __init__(
        self,
        compute: Callable[[], T],
        ttl: float | Callable[[], float],
        *,
        cacheable: Callable[[T], bool] = lambda value: True,
        cleanup: Callable[[], None] | None = None,
        name: str = "snapshot",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._ttl = ttl if callable(ttl) else (lambda: float(ttl))
        self._cacheable = cacheable
        # Run in the background thread when its refresh ends (Django: close that thread's connections).
        self._cleanup = cleanup
        self.name = name
        self._clock = clock
        # Guards the three fields below; never held while computing, so a slow computation blocks nobody
        # who can be served.
        self._lock = threading.Lock()
        self._entry: _Entry[T] | None = None
        self._flight: _Flight | None = None
        self._waiting = 0
        self.computations = 0  # how many times compute ran: for tests and debugging

    @property
    def waiting(self) -> int:
        """Callers blocked on a computation right now."""
        with self._lock:
            return self._waiting

    def clear(self) -> None:
        """Forget the kept value (the next call computes); a computation in flight still finishes."""
        with self._lock:
            self._entry = None

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until no computation is in flight; False when one still runs after `timeout`."""
        with self._lock:
            flight = self._flight
        return flight is None or flight.done.wait(timeout)

    def get(self, version: Hashable = None) -> T:
        """The value for a caller that has just read `version` (read it BEFORE calling: see state_version)."""
        ttl = self._ttl()
        if ttl <= 0:
            self.computations += 1
            return self._compute()
        asked = self._clock()
        while True:
            with self._lock:
                entry = self._entry
                current = entry is not None and (entry.version == version or entry.taken_at > asked)
                age = self._clock() - entry.taken_at if entry is not None else 0.0
                if current and age < ttl:
                    return entry.value  # type: ignore[union-attr]
                servable = current and age < ttl * STALE_FACTOR
                flight = self._flight
                leader = flight is None
                if leader:
                    self._flight = flight = _Flight(version, self._clock())
                elif not servable:
                    self._waiting += 1
            if servable:
                if leader:
                    # A thread, not this caller: the refresh's cost falls on nobody's response time.
                    thread = threading.Thread(
                        target=self._refresh, args=(flight,), name=f"snapshot-{self.name}", daemon=True
                    )
                    try:
                        thread.start()
                    except RuntimeError:  # no thread to be had: refresh here rather than leave the flight hanging
                        self._run(flight)
                return entry.value  # type: ignore[union-attr]
            if leader:
                self._run(flight)
            else:
                try:
                    flight.done.wait()
                finally:
                    with self._lock:
                        self._waiting -= 1
                if flight.version != version and flight.started <= asked:
                    continue  # it read an older state than this caller must show: look again
            if flight.error is not None:
                raise flight.error
            return flight.value

    def _run(self, flight: _Flight) -> None:
        try:
            self.computations += 1
            value = self._compute()
            flight.value = value
            if self._cacheable(value):
                with self._lock:
                    # Never replace a newer kept value with this one (a slow computation ending late).
                    if self._entry is None or self._entry.taken_at <= flight.started:
                        self._entry = _Entry(value, flight.started, flight.version)
        except BaseException as exc:  # every waiter gets it; nothing is kept
            flight.error = exc
        finally:
            with self._lock:
                self._flight = None
            flight.done.set()

    def _refresh(self, flight: _Flight) -> None:
        try:
            self._run(flight)
            if flight.error is not None:
                log.warning("snapshot %s: refresh failed, serving the previous value: %r", self.name, flight.error)
        finally:
            if self._cleanup is not None:
                try:
                    self._cleanup()
                except Exception:  # a cleanup failure must not kill the process's only refresher thread silently
                    log.exception("snapshot %s: cleanup after a refresh failed", self.name)


# --- the shared version ----------------------------------------------------------------


def _version_sql() -> str:
    """Scalar subqueries, one per thing the answers show. Each moves with every committed change to it:
    MAX of a time the writer sets (a round's last_checked_at, an edit's auto_now updated_at, a tunnel
    check's updated_at), MAX(id) of append-only rows, and counts of rows that can flip back and forth.
    Under 1 ms at 1,000 services and 20,000 attempts on SQLite (the service columns are scanned: a
    row per service), against ~150 ms to compute the status it guards."""
    qn = connection.ops.quote_name
    service = qn(Service._meta.db_table)
    result = qn(ProbeResult._meta.db_table)
    incident = qn(Incident._meta.db_table)
    beat = qn(SchedulerHeartbeat._meta.db_table)
    attempt = qn(RecoveryAttempt._meta.db_table)
    state = qn(RecoveryState._meta.db_table)
    tunnel = qn(Tunnel._meta.db_table)
    event = qn(TunnelEvent._meta.db_table)
    return (
        "SELECT"
        # Every recorded probe result adds a row, live or replayed from the spool with its own (older)
        # time: a replayed round moves MAX(id) even where it leaves MAX(last_checked_at) as it was.
        f" (SELECT MAX(id) FROM {result}),"
        f" (SELECT COUNT(*) FROM {service}), (SELECT MAX(last_checked_at) FROM {service}),"
        f" (SELECT MAX(updated_at) FROM {service}), (SELECT MAX(status_changed_at) FROM {service}),"
        f" (SELECT COUNT(*) FROM {incident} WHERE resolved_at IS NULL), (SELECT MAX(id) FROM {incident}),"
        f" (SELECT MAX(last_run_at) FROM {beat} WHERE name = %s),"
        # Every start bumps MAX(id); with no start, every finish lowers the in-progress count (indexed):
        # no scan of the whole (growing) attempt table.
        f" (SELECT MAX(id) FROM {attempt}), (SELECT COUNT(*) FROM {attempt} WHERE outcome = %s),"
        f" (SELECT COUNT(*) FROM {state} WHERE escalated_at IS NOT NULL), (SELECT MAX(escalated_at) FROM {state}),"
        f" (SELECT COUNT(*) FROM {tunnel}), (SELECT MAX(updated_at) FROM {tunnel}), (SELECT MAX(id) FROM {event})"
    )


def state_version() -> tuple[str, ...]:
    """The version of everything /health/status and /metrics read from the database, in ONE query.

    Read per request, before the snapshot: equal versions mean no committed change in between. Raises
    DatabaseError when the database cannot be read (the callers then answer without the snapshot).
    """
    with connection.cursor() as cursor:
        cursor.execute(_version_sql(), [HEARTBEAT, RecoveryAttempt.Outcome.IN_PROGRESS])
        row = cursor.fetchone()
    return tuple(str(value) for value in row)


# --- /health/status ------------------------------------------------------------------


def _fragment(key: str, value: Any) -> str:
    """`"key": value` exactly as JsonResponse encodes it inside an object (same encoder, same separators)."""
    return json.dumps({key: value}, cls=DjangoJSONEncoder)[1:-1]


@dataclass(frozen=True)
class StatusParts:
    """A `status_payload()` result and, pre-encoded, its database-read sections (the bulk of the body)."""

    payload: dict[str, Any]
    services_json: str
    tail_json: str  # tunnels, incidents, recovery, scheduler: the keys after `database`, in their order


_TAIL_KEYS = ("tunnels", "incidents", "recovery", "scheduler")


def _status_parts() -> StatusParts:
    # status_payload() itself, not a copy of its reads: one source of truth for what /health/status says.
    # Its `database` and `timestamp` are replaced per request (cached_status); the rest is what is cached.
    payload = status_payload()
    return StatusParts(
        payload=payload,
        services_json=_fragment("services", payload["services"]),
        tail_json=", ".join(_fragment(k, payload[k]) for k in _TAIL_KEYS),
    )


# A payload with `unavailable` is a partial read (a database error on the way): answered, never kept.
status_snapshot: Snapshot[StatusParts] = Snapshot(
    _status_parts,
    cache_seconds,
    cacheable=lambda parts: "unavailable" not in parts.payload,
    cleanup=close_connections,  # the refresh thread's own connection
    name="status",
)


@dataclass(frozen=True)
class StatusAnswer:
    """What the status view sends: the payload, its HTTP status, and (when cached) the body already encoded."""

    payload: dict[str, Any]
    code: int
    body: bytes | None  # None: encode `payload` as today


def cached_status() -> StatusAnswer:
    """/health/status with the database reads from `status_snapshot` (at the current state version) and
    the database check and the outage spool live.

    With the cache off, or when the live check says the database is down (or the version cannot be read),
    this is `status_payload()` as today: a JSON 503 `down`, never kept data that claims the database is up.
    """
    if cache_seconds() <= 0:
        payload = status_payload()
        return StatusAnswer(payload, 503 if payload["status"] == DOWN else 200, None)
    database = with_spool(database_status())
    version = None
    if database["status"] != "down":
        try:
            version = state_version()
        except DatabaseError as exc:
            log.warning("/health/status: state version unreadable: %s", exc.__class__.__name__)
    if version is None:
        # Today's answer, from the check just taken (a second one would wait twice and count twice).
        payload = status_payload(database)
        return StatusAnswer(payload, 503 if payload["status"] == DOWN else 200, None)
    parts = status_snapshot.get(version)
    if "unavailable" in parts.payload:
        # Computed for this very request (never kept): today's answer as it is.
        return StatusAnswer(parts.payload, 503 if parts.payload["status"] == DOWN else 200, None)
    # With the services read, status_payload's overall status depends only on them and the scheduler
    # (apply_scheduler_status(overall_status(services), scheduler)), not on the database check: the database
    # is up here, so the kept overall status is the one status_payload would compute now from the same reads.
    overall = parts.payload["status"]
    timestamp = timezone.now().isoformat()
    payload = {**parts.payload, "timestamp": timestamp, "database": database}
    body = "{" + ", ".join(
        (
            _fragment("status", overall),
            _fragment("timestamp", timestamp),
            parts.services_json,
            _fragment("database", database),
            parts.tail_json,
        )
    )
    return StatusAnswer(payload, 503 if overall == DOWN else 200, (body + "}").encode())
