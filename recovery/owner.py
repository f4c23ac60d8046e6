"""Who runs a recovery attempt, whether it is still alive, and what is left of a dead one.

A claim (RecoveryState) and its attempt carry their owner, `host:pid:nonce`. The owner beats a
SchedulerHeartbeat row `recovery:<owner>` every BEAT_S from a small thread for as long as the attempt
runs — whichever process runs it: a qcluster's dispatcher round, `runprobes`, gunicorn's POST
/health/recover, the dashboard, `manage.py recover`. It is the dispatcher's mechanism (dispatch.scheduler:
`loop:<owner>` rows, dead after owner_dead_after()), under its own prefix so doctor and the fallback
task do not count an attempt as a dispatcher loop. A claim is taken over only when its owner is dead:
- its heartbeat is older than owner_dead_after() (any host), judged only once this process has reached the
  database for owner_dead_after() since its last transient error (core.db.last_transient_at): an owner
  kept from beating by the same outage is not dead, or
- its process is gone on this machine (at once, no need to wait for the heartbeat to age). "This machine" is
  the hostname and a machine id in the owner id (`host:pid:nonce@machine`: the boot id and the pid namespace,
  hashed), as two containers or pods can share a hostname; an owner without it relies on its heartbeat.
An attempt runs for hours if its action does; age alone never frees a claim that has an owner. A claim
without one (written before owners existed) still goes stale after RECOVERY_STALE_AFTER.

A takeover kills what is left of the dead owner's action: its process group, recorded with the attempt
when it started (core.procs.StartedChild: pid + create time, host). On another host it cannot be
killed from here: its supervisor kills it by `killBy` (timeout + grace), and the claim is held until then,
so two copies never run at once across hosts either.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import signal
import socket
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
from django.conf import settings
from django.db import connections
from django.utils import timezone

from core import db
from core.liveness import new_owner, owner_dead_after
from core.models import SchedulerHeartbeat
from core.procs import ProcRef

log = logging.getLogger("opsportal.recovery")

OWNER_PREFIX = "recovery:"
# How often an attempt's owner beats (the dispatcher's tick); it is dead after owner_dead_after() (6 s).
BEAT_S = 1.0
# Heartbeat rows of owners silent this long are deleted (an owner deletes its own when its attempt ends).
OWNER_ROW_TTL = timedelta(hours=1)


def this_host() -> str:
    return socket.gethostname()[:32]


@functools.cache
def machine_id() -> str:
    """This boot of this machine and this pid namespace, hashed short ("" where /proc does not say): pids are
    comparable only between processes with the same one."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}:{namespace}".encode()).hexdigest()[:8]


def beat(owner: str, now: datetime | None = None) -> int:
    """The owner's heartbeat; only an UPDATE (the row is created by OwnerBeat before the claim)."""
    return SchedulerHeartbeat.objects.filter(name=OWNER_PREFIX + owner).update(last_run_at=now or timezone.now())


class OwnerBeat:
    """`with OwnerBeat() as owner:` — a fresh owner id whose heartbeat row exists (written here, before any
    claim names it) and is beaten by a thread until the block ends; the row is deleted then.

    The thread stops beating after `limit` seconds (default 2 × RECOVERY_STALE_AFTER, far past any attempt
    import accepts): an attempt hung that long is taken over like a dead one.
    """

    def __init__(self, limit: float | None = None) -> None:
        self.owner = f"{new_owner()}@{machine_id()}" if machine_id() else new_owner()
        self.limit = 2.0 * settings.RECOVERY_STALE_AFTER if limit is None else limit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> str:
        now = timezone.now()
        SchedulerHeartbeat.objects.create(
            name=OWNER_PREFIX + self.owner, last_run_at=now, host=this_host()[:100], pid=os.getpid()
        )
        self._thread = threading.Thread(target=self._run, name=f"recovery-beat-{self.owner}", daemon=True)
        self._thread.start()
        return self.owner

    def _run(self) -> None:
        ends = time.monotonic() + self.limit
        try:
            while not self._stop.wait(BEAT_S):
                if time.monotonic() > ends:
                    log.error(
                        "Recovery owner %s: attempt still running after %.0f s; no longer beating",
                        self.owner,
                        self.limit,
                    )
                    return
                try:
                    beat(self.owner)
                except Exception as exc:  # the database away: the next beat tries again, on a new connection
                    db.note_transient(exc)
                    # No request boundary drops a broken connection in this thread: without this every later
                    # beat reuses it (a restarted PostgreSQL) and the live owner looks dead.
                    db.close_connections()
                    log.debug("Recovery owner %s: beat failed (%s)", self.owner, type(exc).__name__)
        finally:
            connections.close_all()  # this thread's own connection

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            SchedulerHeartbeat.objects.filter(name=OWNER_PREFIX + self.owner).delete()
        except Exception as error:  # the database away: the row ages out (dead) and is pruned later
            log.debug("Recovery owner %s: heartbeat row not deleted (%s)", self.owner, type(error).__name__)


def _parse(owner: str) -> tuple[str, int | None, str]:
    """(host, pid, machine id) of an owner id `host:pid:nonce@machine` (dispatch.scheduler.new_owner + machine_id;
    an id without `@machine` gives "")."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return "", None, ""
    return parts[0], int(parts[1]), parts[2].partition("@")[2]


class Liveness:
    """Whether owners are alive, read once per takeover pass (one query for the heartbeats)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._beats: dict[str, datetime] | None = None

    def beats(self) -> dict[str, datetime]:
        if self._beats is None:
            rows = SchedulerHeartbeat.objects.filter(name__startswith=OWNER_PREFIX).values_list("name", "last_run_at")
            self._beats = {name.removeprefix(OWNER_PREFIX): at for name, at in rows}
        return self._beats

    def dead_reason(self, owner: str) -> str:
        """Why `owner` is dead ("" while it is alive)."""
        host, pid, machine = _parse(owner)
        local = host == this_host() and bool(machine) and machine == machine_id()
        if local and pid is not None and not psutil.pid_exists(pid):
            return f"its process {pid} on {host} is gone"
        last = self.beats().get(owner)
        if last is None:
            return f"its owner {owner} stopped beating (no heartbeat)"
        if last < self.now - owner_dead_after():
            connected = db.seconds_since_transient()
            if connected is not None and connected < owner_dead_after().total_seconds():
                log.debug("Recovery owner %s: heartbeat not judged, the database was away %.0f s ago", owner, connected)
                return ""
            return f"its owner {owner} stopped beating ({(self.now - last).total_seconds():.0f} s ago)"
        return ""


def orphan(action_data: Any) -> dict[str, Any] | None:
    """The process group an attempt recorded when its action started, if any."""
    info = action_data.get("process") if isinstance(action_data, dict) else None
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def kill_orphan(info: dict[str, Any], now: float | None = None) -> tuple[bool, str]:
    """End what is left of a dead owner's action. Returns (done, what happened): done is False only for a group
    on another host whose supervisor has not reached its deadline yet (the claim must wait for it)."""
    now = time.time() if now is None else now
    pid, host = info["pid"], str(info.get("host", ""))
    kill_by = float(info.get("killBy") or 0)
    if host != this_host():
        if info.get("supervised") and now < kill_by:
            return (
                False,
                f"its action (group {pid}) runs on {host}: its supervisor ends it within {kill_by - now:.0f} s",
            )
        return True, f"its action (group {pid}) ran on {host}"
    proc = ProcRef(pid, float(info.get("createTime") or 0)).process()
    if proc is None:
        return True, f"its action (group {pid}) had already ended"
    # The leader is the one recorded (pid and create time match): its group is the action's.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True, f"killed its orphaned action (process group {pid})"


def forget_dead_owners(now: datetime | None = None) -> int:
    """Delete heartbeat rows of owners silent for OWNER_ROW_TTL (an owner that died left its row behind)."""
    cutoff = (now or timezone.now()) - OWNER_ROW_TTL
    return SchedulerHeartbeat.objects.filter(name__startswith=OWNER_PREFIX, last_run_at__lt=cutoff).delete()[0]
