"""One check of one tunnel (and maybe a restart): process alive -> connector ready -> public URL."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import requests
from django.conf import settings
from django.utils import timezone

from core import procs
from core.db import DB_ERRORS, run_db
from core.http import session
from core.spec import ConfigError, expand_env, scrub
from core.spool import create_or_spool, update_or_spool
from health.models import Event
from health.probes.base import ProbeError
from health.probes.http import HttpProbe
from tunnels.claims import PUBLIC_TIMEOUT, READY_TIMEOUT, STOP_GRACE_SECONDS, bounded
from tunnels.memory import MEMORY, MEMORY_LOCK, identity, remembered
from tunnels.models import Tunnel, TunnelEvent

log = logging.getLogger("opsportal.tunnels")

READY_BODY_LIMIT = 65536
STARTUP_POLL_SECONDS = 0.2

Kind = TunnelEvent.Kind
Status = Tunnel.Status

# A restart without a live recorded connector stops what process_match finds, at most this many (a tunnel
# is one connector): past it nothing is stopped nor started, and the restart_failed event names them.
MAX_MATCHES = 1
# The row fields a check writes (its state); claim fields (running_since, next_due_at) are not among them.
STATE_FIELDS = Tunnel.STATE_FIELDS


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
            with MEMORY_LOCK:
                m = MEMORY.get(self.t.pk)
                if m is not None and identity(m.tunnel) == identity(self.t):
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
        with MEMORY_LOCK:
            m = MEMORY.get(t.pk)
            if m is not None and identity(m.tunnel) == identity(t) and m.tunnel is not t:
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
