"""The outage spool: what could not be written to the database waits in an append-only file.

`var/spool/spool.jsonl` holds one JSON object a line, `{"kind", "at", "payload"}`, each line
written and fsync'd under an exclusive file lock (several processes may spool at once). The file
is bounded by SPOOL_MAX_BYTES: past it a record is dropped with one clear error line.

Replay (when the database answers again) is in order and exactly once: the spool file is first
renamed to a numbered batch file (new records then go to a fresh spool), then the whole batch is
applied in ONE transaction together with a `SpoolBatch` row named after it. A crash after the
commit but before the unlink finds that row next time and only removes the file; a failure before
the commit leaves the batch for the next try, older batches first.

Record kinds have handlers (`register`); `create` (any model row, e.g. a TunnelEvent or a
RecoveryAttempt) and `update` (fields of one row by pk, optionally only where other fields still
match, e.g. a claim token) are built in; `probe_round` is registered by health.runner and
`recovery_escalation` by recovery.engine. `create_or_spool`, `update_or_spool` and
`write_or_spool` write now when the database answers (older spooled records first, so order
holds) and spool only on a transient error: a record the database refuses for good (an
integrity error) raises at once instead of poisoning a batch. Replays are serialised by a
file lock, so two threads or processes never apply one batch twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, transaction

from opsportal.db import is_transient

log = logging.getLogger("opsportal.spool")

Handler = Callable[[dict[str, Any]], Any]
_handlers: dict[str, Handler] = {}


# Modules that register a kind: imported on a miss, so any process can replay any record
# (a web worker's create_or_spool may replay a batch the dispatcher spooled).
_providers = {"probe_round": "health.runner", "recovery_escalation": "recovery.engine"}


def register(kind: str, handler: Handler) -> None:
    """Register how a record kind is written to the database on replay."""
    _handlers[kind] = handler


def handler_for(kind: str) -> Handler | None:
    if kind not in _handlers and kind in _providers:
        importlib.import_module(_providers[kind])
    return _handlers.get(kind)


def _create_row(payload: dict[str, Any]) -> Any:
    model = apps.get_model(payload["model"])
    return model.objects.create(**payload["fields"])


def _update_row(payload: dict[str, Any]) -> int:
    # A row deleted meanwhile updates nothing: not an error (the update is moot).
    model = apps.get_model(payload["model"])
    return model.objects.filter(pk=payload["pk"], **payload.get("where", {})).update(**payload["fields"])


register("create", _create_row)
register("update", _update_row)


class _Encoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()  # full precision: DjangoJSONEncoder would cut to milliseconds
        return super().default(o)


class Spool:
    def __init__(self, directory: Path | str | None = None, max_bytes: int | None = None) -> None:
        self.directory = Path(directory or Path(settings.VAR_DIR) / "spool")
        self.max_bytes = max_bytes if max_bytes is not None else settings.SPOOL_MAX_BYTES
        self.path = self.directory / "spool.jsonl"
        self._full_logged = False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "spool.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, kind: str, payload: dict[str, Any]) -> bool:
        """Append one record durably; False (and an error line, once per outage) when the spool is full."""
        line = json.dumps({"kind": kind, "at": time.time(), "payload": payload}, cls=_Encoder) + "\n"
        data = line.encode()
        with self._locked():
            size = self.path.stat().st_size if self.path.exists() else 0
            if size + len(data) > self.max_bytes:
                if not self._full_logged:
                    log.error(
                        "[spool] Spool full (%d of %d bytes): dropping %s records until the database is back",
                        size,
                        self.max_bytes,
                        kind,
                    )
                    self._full_logged = True
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        return True

    def batches(self) -> list[Path]:
        return sorted(self.directory.glob("batch-*.jsonl")) if self.directory.exists() else []

    def pending(self) -> bool:
        """Anything waiting? Cheap (two stat calls): called before every database write of a round."""
        return (self.path.exists() and self.path.stat().st_size > 0) or bool(self.batches())

    def size(self) -> int:
        return sum(p.stat().st_size for p in [self.path, *self.batches()] if p.exists())

    def _cut_batch(self) -> None:
        """Move the current spool aside as the next numbered batch (under the lock, so no append is lost)."""
        with self._locked():
            if self.path.exists() and self.path.stat().st_size > 0:
                name = f"batch-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.jsonl"
                os.replace(self.path, self.directory / name)
                self._full_logged = False

    def replay(self) -> int:
        """Write every spooled record to the database, oldest batch first; returns how many.

        Raises DatabaseError when the database still cannot be written (the rest stays spooled).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        # One replayer at a time (threads of a dispatcher, processes of a host): two applying one batch
        # would race on its SpoolBatch row and set a good batch aside as failed.
        with open(self.directory / "replay.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._replay_all()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _replay_all(self) -> int:
        replayed = 0
        while True:
            if not self.batches():
                self._cut_batch()  # only when older batches are done, so an outage leaves few files
            batches = self.batches()
            if not batches:
                return replayed
            replayed += self._replay_batches(batches)

    def _replay_batches(self, batches: list[Path]) -> int:
        from health.models import SpoolBatch

        replayed = 0
        for batch in batches:
            batch_id = batch.stem
            records = [json.loads(line) for line in batch.read_text().splitlines() if line.strip()]
            if not SpoolBatch.objects.filter(batch_id=batch_id).exists():
                try:
                    self._apply(batch_id, records)
                except DatabaseError as exc:
                    if is_transient(exc):
                        raise  # still down: keep the batch (and the ones after it) for the next try
                    # A batch the database refuses for good must not block every later one.
                    os.replace(batch, batch.with_name("failed-" + batch.name))
                    log.error("[spool] Batch %s cannot be replayed (%s); kept as failed-%s", batch_id, exc, batch.name)
                    continue
                replayed += len(records)
                log.warning("[spool] Replayed %d spooled records (%s)", len(records), batch_id)
            batch.unlink()
        return replayed

    @staticmethod
    @transaction.atomic
    def _apply(batch_id: str, records: list[dict[str, Any]]) -> None:
        from health.models import SpoolBatch

        for record in records:
            handler = handler_for(record["kind"])
            if handler is None:
                log.error("[spool] No handler for spooled %r record; skipped", record["kind"])
                continue
            handler(record["payload"])
        SpoolBatch.objects.create(batch_id=batch_id, records=len(records))


_default: Spool | None = None


def default_spool() -> Spool:
    global _default
    if _default is None or _default.directory != Path(settings.VAR_DIR) / "spool":
        _default = Spool()
    return _default


def replay_pending(*, retry: bool = True) -> int:
    """Replay the default spool if it holds anything (through the retry/breaker); 0 when empty."""
    from opsportal.db import run_db

    spool = default_spool()
    if not spool.pending():
        return 0
    return run_db(spool.replay, retry=retry)


def write_or_spool(kind: str, payload: dict[str, Any], *, retry: bool = True) -> Any:
    """Apply a record through its handler now, or spool it when the database cannot be written.

    Older spooled records are replayed first, so what is written now never overtakes them. Returns
    the handler's result, or None when spooled. With `retry=False` one try is made (through the
    breaker, so it fails fast while open): for callers that already know the database is away.
    A non-transient error (an integrity error, a bug) is raised, never spooled.
    """
    from opsportal.db import CircuitBreakerError, is_transient, run_db

    handler = handler_for(kind)
    if handler is None:
        raise KeyError(f"no spool handler for {kind!r}")
    try:
        replay_pending(retry=retry)
        return run_db(handler, payload, retry=retry)
    except (DatabaseError, CircuitBreakerError) as exc:
        if isinstance(exc, DatabaseError) and not is_transient(exc):
            raise
        what = payload.get("model", kind)
        log.warning("[spool] Database unwritable (%s): %s %s spooled", type(exc).__name__, what, kind)
        default_spool().append(kind, payload)
        return None


def create_or_spool(model_label: str, *, retry: bool = True, **fields: Any) -> Any:
    """Create a model row (e.g. "tunnels.TunnelEvent"), or spool it when the database cannot be written.

    Returns the row, or None when it was spooled. Use `<fk>_id` for foreign keys, and pass
    `created_at` (or the model's time field) explicitly: a replayed row must keep its own time.
    """
    return write_or_spool("create", {"model": model_label, "fields": fields}, retry=retry)


def update_or_spool(
    model_label: str, pk: Any, fields: dict[str, Any], *, where: dict[str, Any] | None = None, retry: bool = True
) -> int | None:
    """UPDATE one row's `fields` by pk (and only while `where` matches), or spool it as an `update` record.

    Returns the number of rows changed (0 or 1), or None when spooled. `auto_now` fields are not
    touched by an UPDATE: pass them in `fields`.
    """
    payload: dict[str, Any] = {"model": model_label, "pk": pk, "fields": fields}
    if where:
        payload["where"] = where
    return write_or_spool("update", payload, retry=retry)
