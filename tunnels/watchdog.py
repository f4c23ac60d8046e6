"""The tunnel watchdog: process alive -> connector ready -> public URL, and rate-limited restarts.

One check of a tunnel, with its claim held:
  (a) the process: the pid this watchdog started (pid + create time; a zombie is dead), else
      the first process whose command line contains `process_match`;
  (b) `ready_url` (cloudflared's metrics `/ready`): 200 with `readyConnections` >= 1;
  (c) `public_url`: 2xx/3xx.
A restart happens when (a) fails or (b) fails `ready_failure_threshold` times in a row, at
most `max_restarts_per_hour` in any rolling hour (counted from TunnelEvent rows, so the limit
holds across processes and restarts of the portal). (c) failing while (b) is fine is the
origin's fault: recorded as `origin_unreachable`, never "fixed" by a restart.

Entry points: `run_due()` (the scheduler and `watchtunnels`), `check_now()` (`watchtunnels
--once/--interval`, the admin), `restart_for_recovery()` (the `restart_tunnel` recovery action)
and `restart()` (the admin).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psutil
import requests
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from health.models import Event
from health.probes.base import ProbeError
from health.probes.http import HttpProbe, session
from opsportal import procs
from opsportal.spec import ConfigError, expand_env, scrub
from tunnels.models import Tunnel, TunnelEvent

log = logging.getLogger("opsportal.tunnels")

STOP_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL after this
READY_TIMEOUT = 5.0  # the metrics server is local: a slow answer is itself a bad sign
PUBLIC_TIMEOUT = 10.0
READY_BODY_LIMIT = 65536
STARTUP_POLL_SECONDS = 0.2
RECOVERY_CLAIM_WAIT = 10.0  # how long restart_for_recovery waits for a running check to finish

Kind = TunnelEvent.Kind
Status = Tunnel.Status

# Connectors this process started: reaped explicitly so exited ones do not linger as zombies.
_started: set[procs.ProcRef] = set()


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


def claim_ttl(tunnel: Tunnel) -> timedelta:
    """After this long a claim is presumed abandoned (its process died mid-check)."""
    longest = tunnel.startup_timeout + tunnel.settle_seconds + STOP_GRACE_SECONDS * 2 + READY_TIMEOUT + PUBLIC_TIMEOUT
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
    Tunnel.objects.filter(pk=tunnel.pk, running_since=stamp).update(**values)


def run_due(now: datetime | None = None, *, names: list[str] | None = None) -> list[CheckResult]:
    """Claim every enabled tunnel whose check is due at `now` and check each once.

    `now` decides what is due and stamps the claims; events and the rolling hour use the
    clock at the moment they happen.
    """
    now = now or timezone.now()
    due = Tunnel.objects.filter(Q(next_due_at__isnull=True) | Q(next_due_at__lte=now), enabled=True)
    if names:
        due = due.filter(name__in=names)
    results = []
    for tunnel in due:
        stamp = claim(tunnel, now, due=True)
        if stamp is not None:
            results.append(_check_claimed(tunnel, stamp))
    return results


def check_now(tunnel: Tunnel, now: datetime | None = None) -> CheckResult | None:
    """Check one tunnel now whatever its due time; None when another process is checking it."""
    stamp = claim(tunnel, now or timezone.now(), due=False)
    return None if stamp is None else _check_claimed(tunnel, stamp)


def _check_claimed(tunnel: Tunnel, stamp: datetime) -> CheckResult:
    started = time.monotonic()
    try:
        tunnel.refresh_from_db()
        return Check(tunnel).run()
    except Exception as exc:  # one broken tunnel must not stop the others
        log.exception("[%s] Watchdog check crashed", tunnel.name)
        return CheckResult(tunnel.name, Status.UNKNOWN, detail=f"internal error: {type(exc).__name__}")
    finally:
        release(tunnel, stamp, time.monotonic() - started)


def restart_for_recovery(tunnel_name: str) -> tuple[bool, str]:
    """Restart a tunnel for the `restart_tunnel` recovery action; honours the hourly limit and the claim."""
    return restart(tunnel_name, "requested by recovery")


def restart(tunnel_name: str, reason: str) -> tuple[bool, str]:
    """Restart a tunnel on request (recovery, the admin): the same claim, hourly limit and events as a check."""
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
        tunnel.refresh_from_db()
        result = Check(tunnel).restart_and_save(reason)
    finally:
        release(tunnel, stamp, time.monotonic() - started)
    return result.restarted, result.detail


# --- the check -------------------------------------------------------------------------------


def reap_started() -> None:
    """Collect the exit status of connectors this process started that have exited (zombies)."""
    for ref in list(_started):
        try:
            proc = psutil.Process(ref.pid)
            if abs(proc.create_time() - ref.create_time) > 0.01:
                _started.discard(ref)  # collected elsewhere, and the pid reused: not ours to wait for
            elif proc.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(ref.pid, os.WNOHANG)
                _started.discard(ref)
        except psutil.NoSuchProcess:
            _started.discard(ref)


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
    """One check (and maybe a restart) of one tunnel; the caller holds the tunnel's claim."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.t = tunnel
        self.previous = tunnel.status
        self.events: list[str] = []
        self.secrets: list[str] = []

    # -- recording
    def event(self, kind: str, detail: str, pid: int | None = None) -> None:
        detail = scrub(detail, self.secrets)[:500]
        TunnelEvent.objects.create(tunnel=self.t, kind=kind, pid=pid, detail=detail)
        self.events.append(kind)

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
        t.last_checked_at = timezone.now()
        t.save(
            update_fields=[
                "status",
                "pid",
                "pid_create_time",
                "ready_connections",
                "consecutive_ready_failures",
                "last_checked_at",
                "last_restart_at",
                "last_detail",
                "updated_at",
            ]
        )
        return CheckResult(t.name, status, t.pid, t.last_detail, self.events)

    # -- the three layers
    def process(self) -> psutil.Process | None:
        t = self.t
        if t.pid and t.pid_create_time is not None:
            proc = procs.ProcRef(t.pid, t.pid_create_time).process()
            if proc is not None:
                return proc
        if t.process_match:
            found = procs.find_processes(cmdline_contains=t.process_match)
            with contextlib.suppress(psutil.NoSuchProcess):
                if found:
                    return min(found, key=lambda p: p.create_time())
        return None

    def run(self) -> CheckResult:
        reap_started()
        t = self.t
        proc = self.process()
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
        used = t.restarts_in_window()
        if used >= t.max_restarts_per_hour:
            return self.suppress(used, reason)
        self.say(logging.INFO, "Starting tunnel (%s)...", reason)
        self.stop_existing()
        t.pid = t.pid_create_time = t.ready_connections = None
        t.consecutive_ready_failures = 0
        t.last_restart_at = timezone.now()
        try:
            argv = [expand_env(arg, self.secrets) for arg in t.command]
            ref = procs.start_detached(argv, log_file=self.log_file())
        except (ConfigError, OSError) as exc:
            return self.failed(Status.DOWN, f"could not start the connector: {exc}", None)
        _started.add(ref)
        if not procs.alive_after(ref, t.settle_seconds):
            return self.failed(Status.DOWN, f"connector exited within {t.settle_seconds:g} s of starting", ref.pid)
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
        Event.emit(Event.Kind.TUNNEL_RESTARTED, f"Tunnel {t.name} restarted", subject=t.name, body=detail, pid=ref.pid)
        self.say(logging.INFO, "Tunnel started successfully (PID: %s)", ref.pid)
        return self.save(Status.UP, detail)

    def wait_ready(self, ref: procs.ProcRef) -> tuple[bool, str]:
        deadline = time.monotonic() + self.t.startup_timeout
        detail = "no answer yet"
        while True:
            if not ref.alive():
                return False, f"connector exited before becoming ready ({detail})"
            ready, self.t.ready_connections, detail = ready_state(self.t.ready_url)
            if ready:
                return True, detail
            if time.monotonic() >= deadline:
                return False, f"connector not ready within {self.t.startup_timeout:g} s ({detail})"
            time.sleep(STARTUP_POLL_SECONDS)

    def failed(self, status: str, detail: str, pid: int | None) -> CheckResult:
        self.event(Kind.RESTART_FAILED, detail, pid)
        self.say(logging.ERROR, "Tunnel restart failed: %s", scrub(detail, self.secrets))
        return self.save(status, f"restart failed: {detail}")

    def suppress(self, used: int, reason: str) -> CheckResult:
        t = self.t
        detail = f"restart suppressed ({reason}): {used} restarts in the last hour (max {t.max_restarts_per_hour})"
        if t.suppression_notified():
            # Told once an hour, not on every check.
            self.say(logging.DEBUG, "Restart still suppressed: %s", detail)
        else:
            self.event(Kind.RESTART_SUPPRESSED, detail, t.pid)
            Event.emit(
                Event.Kind.TUNNEL_RESTART_SUPPRESSED,
                f"Tunnel {t.name}: restarts suppressed",
                subject=t.name,
                body=detail,
                restarts_last_hour=used,
                max_restarts_per_hour=t.max_restarts_per_hour,
            )
            self.say(logging.WARNING, "Max restarts reached: %s", detail)
        return self.save(Status.SUPPRESSED, detail)

    def stop_existing(self) -> None:
        t = self.t
        targets: dict[int, psutil.Process] = {}
        if t.pid and t.pid_create_time is not None:
            proc = procs.ProcRef(t.pid, t.pid_create_time).process()
            if proc is not None:
                targets[proc.pid] = proc
        if t.process_match:
            targets.update({p.pid: p for p in procs.find_processes(cmdline_contains=t.process_match)})
        if targets:
            self.say(logging.INFO, "Stopping tunnel process (PID: %s)", ", ".join(map(str, targets)))
            procs.stop(list(targets.values()), grace=STOP_GRACE_SECONDS)
        reap_started()

    def log_file(self) -> str:
        return self.t.log_file or str(settings.LOG_DIR / f"tunnel-{self.t.name}.log")
