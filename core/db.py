"""Hardening of the portal's own database: retry, circuit breaker, slow-query log, shutdown.

- `run_db(fn)` / `@db_unit`: run an idempotent unit of work. Transient errors (see
  `transient_reason`) are retried `DB_RETRY_ATTEMPTS` times (default 3) with exponential
  backoff from `DB_RETRY_BACKOFF_MS` (1 s, 2 s, 4 s), closing the connection before each retry
  and logging `[db] Retry 1/3: 57P01`. Never inside `atomic()`: there the work runs once
  (a broken transaction cannot be resumed; the outermost unit retries it as a whole).
  `run_db(fn, deadline=t)` (a `time.monotonic()` value) starts no backoff that would end after `t`:
  a probe round passes the end of its slot, so its retries never hold it into the next slot (it is
  spooled instead, and the next slot is probed on time).
- One pybreaker circuit breaker per process guards every unit: it opens after
  `DB_BREAKER_FAIL_MAX` (5) consecutive transient failures, then fails fast
  (`CircuitBreakerError`, no network wait) until `DB_BREAKER_RESET_S` (30 s) have passed,
  half-opens and closes on the first success. State changes are logged and, once the
  database is reachable, recorded as `Event` rows `breaker_opened` / `breaker_closed`.
- `slow_query_wrapper` is installed on every connection (health.apps) and logs queries slower
  than `SLOW_QUERY_MS` with a truncated statement and never its parameters.
- `stoppable()`: while a long loop runs, SIGTERM sets `STOP` (the loop ends its pass) instead of
  killing the process mid-write; connections are closed afterwards and at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NotRequired, TypedDict, TypeVar

import pybreaker
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connections
from django.utils import timezone
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential,
)

try:  # psycopg is only needed with PostgreSQL
    import psycopg
except ImportError:  # pragma: no cover
    psycopg = None  # type: ignore[assignment]
try:  # a pooled deployment raises PoolTimeout when no connection frees up in time
    from psycopg_pool import PoolTimeout
except ImportError:  # pragma: no cover - not installed unless the pool is used

    class PoolTimeout(Exception):  # type: ignore[no-redef]
        pass


log = logging.getLogger("opsportal.db")
T = TypeVar("T")

# SQLSTATEs worth retrying: class 08 (connection exceptions) plus these.
TRANSIENT_SQLSTATES = {
    "57P01": "admin shutdown",
    "57P02": "crash shutdown",
    "57P03": "cannot connect now",
    "53300": "too many connections",
    "57014": "statement timeout",
    "55P03": "lock not available",
    "40001": "serialization failure",
    "40P01": "deadlock detected",
}
# Set by SIGTERM: long-running loops (the dispatcher) finish their pass and return.
STOP = threading.Event()
CircuitBreakerError = pybreaker.CircuitBreakerError


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def transient_reason(exc: BaseException) -> str | None:
    """Why `exc` is a transient database error (the SQLSTATE or a short reason), or None."""
    for err in _chain(exc):
        if isinstance(err, pybreaker.CircuitBreakerError):
            return None  # fail fast: never wait on an open breaker
        sqlstate = getattr(err, "sqlstate", None)
        if sqlstate:
            return sqlstate if sqlstate.startswith("08") or sqlstate in TRANSIENT_SQLSTATES else None
        if isinstance(err, PoolTimeout):
            return "PoolTimeout"
        if isinstance(err, sqlite3.OperationalError):
            message = str(err).lower()
            if "is locked" in message:
                return "database is locked"
            if "unable to open database" in message:
                return "cannot open database"
            return None
        if psycopg is not None and isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
            return "connection lost" if "closed" in str(err) or "consuming input" in str(err) else "cannot connect"
        if isinstance(err, InterfaceError) and "closed" in str(err):
            return "connection closed"
    return None


def is_transient(exc: BaseException) -> bool:
    return transient_reason(exc) is not None


# What a unit of work through run_db raises when the database is away: its last transient error, or the open
# breaker's CircuitBreakerError. Catch these, then ask unavailable(): a bug or an integrity error is not that.
DB_ERRORS = (DatabaseError, pybreaker.CircuitBreakerError)


def unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database is away (a transient error, or the breaker is open), so the work
    may be spooled or done from memory; False when the database answered and refused (raise that)."""
    return isinstance(exc, pybreaker.CircuitBreakerError) or (isinstance(exc, DatabaseError) and is_transient(exc))


# time.monotonic() of the last transient error this process met (None: none yet). A heartbeat that aged while
# this process could not reach the database may have aged for the same reason: recovery.owner judges ages only
# once this process has been connected again for a while.
last_transient_at: float | None = None


def note_transient(exc: BaseException) -> bool:
    """is_transient, and when it is, remember when (last_transient_at)."""
    global last_transient_at
    if not is_transient(exc):
        return False
    last_transient_at = time.monotonic()
    return True


def seconds_since_transient() -> float | None:
    """Seconds since this process's last transient database error (None: none yet)."""
    return None if last_transient_at is None else time.monotonic() - last_transient_at


# --- circuit breaker -----------------------------------------------------------------
_pending_events: list[tuple[str, str, dict[str, Any]]] = []
_events_lock = threading.Lock()


class _BreakerLog(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        old = getattr(old_state, "name", None)
        now = timezone.now().isoformat()
        if new_state.name == pybreaker.STATE_OPEN and old != pybreaker.STATE_HALF_OPEN:
            log.error("[db] Circuit breaker opened after %d consecutive failures", cb.fail_counter)
            _queue_event("breaker_opened", "Database circuit breaker opened", at=now, failures=cb.fail_counter)
        elif new_state.name == pybreaker.STATE_OPEN:
            log.warning("[db] Circuit breaker re-opened: trial call failed")
        elif new_state.name == pybreaker.STATE_HALF_OPEN:
            log.info("[db] Circuit breaker half-open: trying the database again")
        elif new_state.name == pybreaker.STATE_CLOSED and old == pybreaker.STATE_HALF_OPEN:
            log.warning("[db] Circuit breaker closed: the database answers again")
            _queue_event("breaker_closed", "Database circuit breaker closed", at=now)
        elif new_state.name == pybreaker.STATE_CLOSED and old == pybreaker.STATE_OPEN:
            # Closed by hand (reset_breaker re-queues what it means to record): nothing is left
            # waiting to be written later into whatever database this process talks to next.
            log.warning("[db] Circuit breaker closed by a reset")
            with _events_lock:
                _pending_events.clear()


def _queue_event(kind: str, title: str, **data: Any) -> None:
    with _events_lock:
        _pending_events.append((kind, title, data))


# Who writes the queued breaker changes as rows: registered by the app that owns the event table
# (health.apps), so this module needs no app. Without one, the changes stay queued (and in the log).
EventWriter = Callable[[list[tuple[str, str, dict[str, Any]]], str], None]
_event_writer: EventWriter | None = None


def register_event_writer(writer: EventWriter) -> None:
    """Set the function that writes breaker changes `(kind, title, data)` into database `using`."""
    global _event_writer
    _event_writer = writer


def flush_breaker_events(using: str = "default") -> int:
    """Write queued breaker state changes as event rows (only possible once the database answers)."""
    with _events_lock:
        pending = list(_pending_events)
        _pending_events.clear()
    if not pending:
        return 0
    if _event_writer is None:
        with _events_lock:
            _pending_events[:0] = pending
        return 0
    try:
        _event_writer(pending, using)
    except DatabaseError:
        with _events_lock:
            _pending_events[:0] = pending
        return 0
    return len(pending)


breaker = pybreaker.CircuitBreaker(
    fail_max=5,
    reset_timeout=30,
    # Only transient database errors count; a bug or an integrity error says nothing of reachability.
    # Every failed unit passes here: the one place its transient error is noted (note_transient).
    exclude=[lambda exc: not note_transient(exc)],
    listeners=[_BreakerLog()],
    throw_new_error_on_trip=False,
    name="database",
)


def configure_breaker() -> None:
    """Apply DB_BREAKER_FAIL_MAX / DB_BREAKER_RESET_S (called at start-up and by tests)."""
    breaker.fail_max = settings.DB_BREAKER_FAIL_MAX
    breaker.reset_timeout = settings.DB_BREAKER_RESET_S


class BreakerStatus(TypedDict):
    state: str  # closed | open | half-open
    consecutiveFailures: int


class DatabaseStatus(TypedDict):
    """`database` of /health/status (the API adds `spool`)."""

    status: str  # up | down
    vendor: str
    latencyMs: float | None
    circuitBreaker: BreakerStatus
    detail: NotRequired[str]


def breaker_status() -> BreakerStatus:
    return {"state": breaker.current_state, "consecutiveFailures": breaker.fail_counter}


def reset_breaker() -> None:
    """Close the circuit breaker and drop this thread's connections (the `reconnect_database` action)."""
    close_connections()
    with _events_lock:
        pending = list(_pending_events)
    was_open = breaker.current_state != pybreaker.STATE_CLOSED
    breaker.close()
    if was_open:
        with _events_lock:
            _pending_events[:0] = pending
        _queue_event("breaker_closed", "Database circuit breaker closed by a reset", at=timezone.now().isoformat())
        flush_breaker_events()


# --- retry -----------------------------------------------------------------------------
def close_connections(using: str | None = None) -> None:
    """Close connections, ignoring errors of a connection that is already broken.

    A connection inside `atomic()` is left alone: closing it would break the caller's transaction.
    """
    targets = [connections[using]] if using else connections.all(initialized_only=True)
    for conn in targets:
        if conn.in_atomic_block:
            continue
        with contextlib.suppress(Exception):
            conn.close()


def _log_retry(retries: int, using: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = transient_reason(exc) if exc else "unknown"
        log.warning("[db] Retry %d/%d: %s", state.attempt_number, retries, reason)
        close_connections(using)

    return before_sleep


def _sleep(seconds: float) -> None:
    # A SIGTERM during the backoff ends the wait; the next try (or the caller) then winds down.
    STOP.wait(seconds)


def _stop_at(deadline: float, retries: int) -> Callable[[RetryCallState], bool]:
    """A tenacity stop: no retry whose backoff would end after `deadline` (time.monotonic())."""

    def past(state: RetryCallState) -> bool:
        if time.monotonic() + state.upcoming_sleep <= deadline:
            return False
        if state.attempt_number <= retries:  # retries were left: say why they are not used
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "[db] No retry after try %d: the unit's deadline comes first (%s)",
                state.attempt_number,
                transient_reason(exc) if exc else "unknown",
            )
        return True

    return past


def run_db(
    fn: Callable[..., T],
    *args: Any,
    using: str = "default",
    retry: bool = True,
    deadline: float | None = None,
    **kwargs: Any,
) -> T:
    """Run an idempotent unit of work through the breaker, retrying transient errors.

    Inside `atomic()` the unit runs once (through the breaker): retrying a statement of a broken
    transaction is wrong, the outermost unit retries the whole transaction. With `deadline` (a
    `time.monotonic()` value) no backoff is started that would end after it: the unit is tried at
    least once, and past the deadline its last error is raised at once.
    """
    if not retry or connections[using].in_atomic_block:
        try:
            with breaker.calling():
                result = fn(*args, **kwargs)
        except DatabaseError as exc:
            # A long-lived loop (the dispatcher) has no request boundary to drop a dead connection:
            # without this, every later call would reuse the broken socket and the breaker never closes.
            if is_transient(exc):
                close_connections(using)
            raise
        if _pending_events and not connections["default"].in_atomic_block:
            flush_breaker_events()
        return result
    retries = settings.DB_RETRY_ATTEMPTS
    stop: Callable[[RetryCallState], bool] = stop_after_attempt(retries + 1)
    if deadline is not None:
        stop = stop_any(stop, _stop_at(deadline, retries))
    retrying = Retrying(
        stop=stop,
        wait=wait_exponential(multiplier=settings.DB_RETRY_BACKOFF_MS / 1000, max=60),
        retry=retry_if_exception(is_transient),
        before_sleep=_log_retry(retries, using),
        sleep=_sleep,
        reraise=True,
    )
    for attempt in retrying:
        with attempt, breaker.calling():
            result = fn(*args, **kwargs)
    if _pending_events:
        flush_breaker_events()
    return result


def db_unit(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator form of `run_db` for a function that is one idempotent unit of work."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return run_db(fn, *args, **kwargs)

    return wrapper


# --- status ----------------------------------------------------------------------------
def database_status(using: str = "default") -> DatabaseStatus:
    """`database` of /health/status: {"status", "vendor", "latencyMs", "circuitBreaker": {...}}.

    One try through the breaker, no retry: a status answer must be quick, and while the breaker
    is open it answers `down` without touching the network.
    """
    conn = connections[using]
    start = time.perf_counter()
    status, latency, detail = "down", None, ""

    def select_one() -> None:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    try:
        with breaker.calling():
            select_one()
        status, latency = "up", round((time.perf_counter() - start) * 1000, 1)
    except pybreaker.CircuitBreakerError:
        detail = "circuit breaker open"
    except DatabaseError as exc:
        detail = transient_reason(exc) or type(exc).__name__
        close_connections(using)
    if status == "up" and _pending_events:
        flush_breaker_events()
    answer: DatabaseStatus = {
        "status": status,
        "vendor": conn.vendor,
        "latencyMs": latency,
        "circuitBreaker": breaker_status(),
    }
    if detail:
        answer["detail"] = detail
    return answer


# --- slow queries ----------------------------------------------------------------------
_WHITESPACE = re.compile(r"\s+")
SLOW_SQL_CHARS = 200


def slow_query_wrapper(execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
    """An execute_wrapper: log statements slower than SLOW_QUERY_MS (statement only: parameters may be secret)."""
    start = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        elapsed_ms = (time.perf_counter() - start) * 1000
        if elapsed_ms > settings.SLOW_QUERY_MS:
            statement = _WHITESPACE.sub(" ", str(sql)).strip()
            if len(statement) > SLOW_SQL_CHARS:
                statement = statement[:SLOW_SQL_CHARS] + "…"
            log.warning("[db] Slow query (%.0f ms > %d ms): %s", elapsed_ms, settings.SLOW_QUERY_MS, statement)


def install_slow_query_log(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    """connection_created receiver: add the slow-query wrapper once per connection object."""
    if connection is not None and slow_query_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(slow_query_wrapper)


# --- shutdown ----------------------------------------------------------------------------
def _on_sigterm(signum: int, frame: Any) -> None:
    log.info("[db] SIGTERM: finishing the current unit of work, then closing connections")
    STOP.set()


@contextlib.contextmanager
def stoppable() -> Iterator[threading.Event]:
    """For a long loop: SIGTERM sets the yielded event; afterwards the old handler is back and connections closed."""
    installed = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if installed else None
    if installed:
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield STOP
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
        close_connections()


atexit.register(close_connections)
