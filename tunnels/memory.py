"""What this process remembers of the tunnels for a database outage, and the host-local claim and ledger
that stand in for the database's claim then (see tunnels.watchdog)."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from tunnels.models import Tunnel, TunnelEvent

Kind = TunnelEvent.Kind
# How often a waiting host claim looks again.
POLL_SECONDS = 0.2


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


MEMORY: dict[int, Remembered] = {}
MEMORY_LOCK = threading.Lock()
# run_due runs every dispatcher pass (~1 s): the rolling hour's restarts are re-read at most this often
# (the dispatcher's own memory refreshes as often), or at once for a tunnel memory does not know yet.
EVENTS_REFRESH_S = 30.0
events_read_at = -math.inf


def identity(tunnel: Tunnel) -> str:
    # A deleted and re-created tunnel (or a test database's reused pk) is another tunnel.
    return f"{tunnel.name}.{int(tunnel.created_at.timestamp() * 1_000_000)}" if tunnel.created_at else tunnel.name


def remember(tunnels: list[Tunnel], now: datetime, *, complete: bool) -> None:
    """Note the tunnels just read and the restart attempts of their rolling hour (one query, at most
    every EVENTS_REFRESH_S unless a tunnel is new to memory).

    The database's restarts are united with those already known, so a restart whose event is still
    in the spool keeps counting. With `complete`, tunnels no longer enabled are forgotten.
    """
    global events_read_at
    seen: dict[int, list[tuple[str, datetime]]] = {}
    with MEMORY_LOCK:
        unknown = any(remembered_unlocked(t) is None for t in tunnels)
    if unknown or time.monotonic() - events_read_at > EVENTS_REFRESH_S:
        since = timezone.now() - Tunnel.RESTART_WINDOW
        kinds = (*TunnelEvent.RESTART_KINDS, Kind.RESTART_SUPPRESSED)
        rows = TunnelEvent.objects.filter(tunnel__in=tunnels, kind__in=kinds, created_at__gt=since)
        for tunnel_id, kind, at in rows.values_list("tunnel_id", "kind", "created_at"):
            seen.setdefault(tunnel_id, []).append((kind, at))
        events_read_at = time.monotonic()
    with MEMORY_LOCK:
        if complete:
            for pk in set(MEMORY) - {t.pk for t in tunnels}:
                del MEMORY[pk]
        for t in tunnels:
            m = MEMORY.get(t.pk)
            if m is None or identity(m.tunnel) != identity(t):
                m = MEMORY[t.pk] = Remembered(copy.copy(t), t.next_due_at or now)
            m.tunnel, m.due = copy.copy(t), t.next_due_at or now
            for kind, at in seen.get(t.pk, []):
                if kind == Kind.RESTART_SUPPRESSED:
                    m.suppressed_at = max(at, m.suppressed_at) if m.suppressed_at else at
                else:
                    m.restarts.add(at)
            m.prune(now)


def forget() -> None:
    """Drop everything remembered (tests)."""
    global events_read_at
    with MEMORY_LOCK:
        MEMORY.clear()
        events_read_at = -math.inf


def remembered_unlocked(tunnel: Tunnel) -> Remembered | None:
    m = MEMORY.get(tunnel.pk)
    return m if m is not None and identity(m.tunnel) == identity(tunnel) else None


def remembered(tunnel: Tunnel) -> Remembered | None:
    with MEMORY_LOCK:
        return remembered_unlocked(tunnel)


def memory_due(tunnel: Tunnel, due: datetime) -> None:
    with MEMORY_LOCK:
        if tunnel.pk in MEMORY:
            MEMORY[tunnel.pk].due = due


def ledger_dir() -> Path:
    return Path(settings.VAR_DIR) / "tunnels"


@contextlib.contextmanager
def host_claim(tunnel: Tunnel, *, wait: float = 0.0) -> Iterator[bool]:
    """The tunnel's host-local claim: an exclusive file lock, held for the check. Yields False when taken.

    flock locks an open file, so it excludes threads of this process as well as other processes.
    """
    directory = ledger_dir()
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    with open(directory / f"{identity(tunnel)}.lock", "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(POLL_SECONDS)
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
            raw: dict[str, Any] = json.loads((ledger_dir() / f"{identity(tunnel)}.json").read_text())
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
        """Take in what another process of this host did during the outage (caller holds MEMORY_LOCK)."""
        m.restarts.update(self.restarts)
        if self.suppressed_at and (m.suppressed_at is None or self.suppressed_at > m.suppressed_at):
            m.suppressed_at = self.suppressed_at
        t = m.tunnel
        if self.pid and self.checked_at and (t.last_checked_at is None or self.checked_at > t.last_checked_at):
            t.pid, t.pid_create_time = self.pid, self.pid_create_time  # the connector it started

    def write(self, tunnel: Tunnel) -> None:
        path = ledger_dir() / f"{identity(tunnel)}.json"
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
