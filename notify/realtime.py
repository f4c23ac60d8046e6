"""Deliver on commit: an outbox row a channel would send is sent seconds after its transaction commits.

`process_outbox` (the `opsportal-notify` schedule) runs once a minute; alone, "down" reached a webhook
~48 s after the incident opened. Here every Event insert (`core.signals.events_written`, sent by
health's Event.save and bulk_create, whoever the writer is) registers a `transaction.on_commit`
callback; a rolled-back row sends nothing. Once committed, if an enabled channel wants one of the rows,
the send is kicked:

- to the Django-Q2 cluster, as an `async_task` of the existing notify task, when an enqueuer is
  registered (dispatch's AppConfig.ready(): notify cannot import dispatch) and says a cluster is alive;
- else in this process, by one daemon thread that runs `process_outbox`. Kicks while it runs coalesce
  into one more pass; the writer (a request, a probe round) only sets a flag and never waits or fails.

The minute schedule stays as the safety net (a lost kick, a crashed worker: the claim's lease expires).
A delivery is never sent twice: the kicked pass and the schedule claim rows the same way
(fan_out's one-row-per-(channel, event) constraint, deliver's conditional UPDATE).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import connections, transaction

from health.models import Event
from notify.models import Channel
from notify.outbox import process_outbox

log = logging.getLogger("opsportal.health")

# Returns True when it handed the send to a live cluster; False (or raising) means "send it here".
Enqueuer = Callable[[], bool]
_enqueuers: list[Enqueuer] = []
RETRIES = 3  # a pass that failed (e.g. "database is locked") is tried again this often, a second apart


def register_enqueuer(enqueue: Enqueuer) -> None:
    """An upper layer's way to hand sends to its workers (dispatch: Django-Q2's async_task)."""
    if enqueue not in _enqueuers:
        _enqueuers.append(enqueue)


def enabled() -> bool:
    return bool(settings.NOTIFY_ON_COMMIT)


def on_events_written(sender: Any = None, events: Sequence[Event] = (), using: str = "default", **kwargs: Any) -> None:
    """`events_written` receiver: send these rows once (and only if) their transaction commits."""
    if not events or not enabled():
        return
    try:
        rows = list(events)
        transaction.on_commit(lambda: committed(rows), using=using, robust=True)
    except Exception:  # the writer's transaction must never fail for a notification
        log.exception("Notifications: could not register the send on commit; the minute schedule will send it")


def committed(events: Sequence[Event]) -> None:
    """After the commit: kick a send if a channel would send one of these rows. Never raises."""
    try:
        if wanted(events):
            kick()
    except Exception:
        log.exception("Notifications: the send on commit failed to start; the minute schedule will send it")


def wanted(events: Sequence[Event]) -> bool:
    """Whether an enabled channel would send one of these events (its kind and service filters)."""
    events = [e for e in events if e.kind != Event.Kind.TEST]  # outbox.send_test sends its own at once
    if not events:
        return False
    channels = list(Channel.objects.filter(enabled=True).prefetch_related("services"))
    for event in events:
        only = event.data.get("channels") if isinstance(event.data, dict) else None
        for channel in channels:
            if only is not None:
                if channel.pk in only:
                    return True
            elif channel.wants(event, {s.pk for s in channel.services.all()}):
                return True
    return False


def kick() -> str:
    """Start a send now: "queued" (a cluster took it) or "inline" (this process's sender thread)."""
    for enqueue in list(_enqueuers):
        try:
            if enqueue():
                return "queued"
        except Exception as exc:  # a broker that is away: send here instead
            log.warning("Notifications: could not queue the send (%s: %s); sending in process", type(exc).__name__, exc)
    sender.kick()
    return "inline"


class Sender:
    """One daemon thread per process that runs `process_outbox` whenever kicked; kicks coalesce."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def kick(self) -> None:
        with self._lock:
            self._idle.clear()
            self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="opsportal-notify", daemon=True)
                self._thread.start()

    def wait_idle(self, timeout: float) -> bool:
        """Tests and the bench: until no pass runs or is due."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
            self._pass()
            with self._lock:
                if not self._wake.is_set():
                    self._idle.set()

    def _pass(self) -> None:
        for attempt in range(1, RETRIES + 1):
            try:
                summary = process_outbox()
                self.passes += 1
                log.debug("Notifications on commit: %s", summary)
                return
            except Exception as exc:
                log.warning(
                    "Notifications: the send on commit failed (try %d of %d): %s: %s",
                    attempt,
                    RETRIES,
                    type(exc).__name__,
                    exc,
                )
                self._wake.wait(1.0)  # a new kick ends the wait early
            finally:
                connections.close_all()  # this thread's connections only: none left open between passes


sender = Sender()
