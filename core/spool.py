"""The outage spool: what could not be written to the database waits in an append-only file.

`var/spool/spool.jsonl` holds one JSON object a line, `{"kind", "at", "payload"}`, each line
written and fsync'd under an exclusive file lock (several processes may spool at once). The file
is bounded by SPOOL_MAX_BYTES: past it (or when the disk refuses the write) a record is dropped, and
`append()` accounts for it so every caller gets the same: a per-host counter (`dropped.json`, what
`/health/status` `database.spool.dropped` and `/metrics` `opsportal_spool_dropped_total` show), a log
line that says "dropped" (the first of an outage an error naming the bound; logger `core.spool`,
routed to the system log), and the outage's tally (`outage-drops.json`) that the next replay, the
database being back, turns into ONE `spool_dropped` Event row (a row is what notifications read; the
spool being full, there is no room to spool the event itself).

Replay (when the database answers again) is in order and exactly once: the spool file is first
renamed to a numbered batch file (new records then go to a fresh spool), then the whole batch is
applied in ONE transaction together with a `SpoolBatch` row named after it. A crash after the
commit but before the unlink finds that row next time and only removes the file; a failure before
the commit leaves the batch for the next try, older batches first.

Record kinds have handlers (`register`); `create` (any model row, e.g. a TunnelEvent or a
RecoveryAttempt) and `update` (fields of one row by pk, optionally only where other fields still
match, e.g. a claim token) are built in; the apps register theirs in `AppConfig.ready()`
(`probe_round` by health, `recovery_escalation` by recovery), so every process can replay every
record. `create_or_spool`, `update_or_spool` and `write_or_spool` write now when the database
answers (older spooled records first, so order holds) and spool only on a transient error: a
record the database refuses for good (an integrity error) raises at once instead of poisoning a
batch. Replays are serialised by a file lock, so two threads or processes never apply one batch
twice.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from django.utils import timezone

from core.db import DB_ERRORS, is_transient, run_db, unavailable
from core.models import SpoolBatch

log = logging.getLogger("opsportal.spool")

Handler = Callable[[dict[str, Any]], Any]
_handlers: dict[str, Handler] = {}


# (a web worker's create_or_spool may replay a batch the dispatcher spooled).


def register(kind: str, handler: Handler) -> None:
    """Register how a record kind is written to the database on replay."""
    _handlers[kind] = handler


def handler_for(kind: str) -> Handler | None:
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("[spool] %s unreadable; counted from 0", path.name)
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` whole (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Spool:
    def __init__(self, directory: Path | str | None = None, max_bytes: int | None = None) -> None:
        self.directory = Path(directory or Path(settings.VAR_DIR) / "spool")
        self._max_bytes = max_bytes
        self.path = self.directory / "spool.jsonl"
        # Shared by every process of the host (the spool directory is per host), written under the lock.
        self.counter_path = self.directory / "dropped.json"
        self.outage_path = self.directory / "outage-drops.json"
        # Drops this process could not write to the counter file (a full disk): still shown.
        self._uncounted = 0
        # records(): lines counted per file as (size, lines), so an append-only file is read only once. Keyed
        # by the file (device, inode), not its path: a spool cut to a batch keeps its count under its new
        # name, and the new spool.jsonl at the old path is counted from its own start.
        self._lines: dict[tuple[int, int], tuple[int, int]] = {}

    @property
    def max_bytes(self) -> int:
        """The bound given, else SPOOL_MAX_BYTES read per call (a changed setting applies at once)."""
        return self._max_bytes if self._max_bytes is not None else settings.SPOOL_MAX_BYTES

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
        """Append one record durably; False when it was dropped (spool full, or the disk refused it).

        A drop is counted, logged as dropped and tallied for the outage's `spool_dropped` event here, so
        no caller can report a dropped record as spooled.
        """
        line = json.dumps({"kind": kind, "at": time.time(), "payload": payload}, cls=_Encoder) + "\n"
        data = line.encode()
        with self._locked():
            size = self.path.stat().st_size if self.path.exists() else 0
            # The bound is for everything waiting: a replay that failed leaves the old spool as a batch.
            waiting = self.size()
            if waiting + len(data) > self.max_bytes:
                self._dropped(kind, f"spool full ({waiting} of {self.max_bytes} bytes)")
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                rest = memoryview(data)
                while rest:  # a short write (a disk or file-size limit) is followed by one that raises
                    rest = rest[os.write(fd, rest) :]
                os.fsync(fd)
            except OSError as exc:
                # No half line left behind: a replay must be able to read every line.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                self._dropped(kind, f"spool not writable ({exc.strerror or exc})")
                return False
            finally:
                os.close(fd)
        return True

    def _dropped(self, kind: str, why: str) -> None:
        """Account for one dropped record (called under the lock)."""
        now = timezone.now().isoformat()
        outage = _read_json(self.outage_path)
        first = not outage
        outage = {
            "dropped": int(outage.get("dropped", 0)) + 1,
            "firstAt": outage.get("firstAt", now),
            "lastAt": now,
            "kinds": {**outage.get("kinds", {}), kind: int(outage.get("kinds", {}).get(kind, 0)) + 1},
            "reason": why,
        }
        try:
            total = _read_json(self.counter_path)
            _write_json(
                self.counter_path, {"dropped": int(total.get("dropped", 0)) + 1, "since": total.get("since", now)}
            )
            _write_json(self.outage_path, outage)
        except OSError as exc:  # the disk that filled the spool may refuse these too: count in memory
            self._uncounted += 1
            log.error("[spool] Drop counter not writable (%s)", exc.strerror or exc)
        if first:
            log.error(
                "[spool] Spool %s: %s record dropped, %s; records are dropped until the database is back",
                "full" if why.startswith("spool full") else "unwritable",
                kind,
                why,
            )
        else:
            log.warning("[spool] %s record dropped, %s (%d dropped in this outage)", kind, why, outage["dropped"])

    def dropped(self) -> int:
        """Records dropped on this host since its counter was created (the spool directory's life)."""
        return int(_read_json(self.counter_path).get("dropped", 0)) + self._uncounted

    def records(self) -> int:
        """Records waiting (spool and batches): only the bytes appended since the last call are read."""
        total = 0
        seen: dict[tuple[int, int], tuple[int, int]] = {}
        for path in [self.path, *self.batches()]:
            try:
                stat = path.stat()
                size, key = stat.st_size, (stat.st_dev, stat.st_ino)
                known_size, lines = self._lines.get(key, (0, 0))
                if size < known_size:  # not the file counted (an inode reused since): count afresh
                    known_size, lines = 0, 0
                if size > known_size:
                    with open(path, "rb") as f:
                        f.seek(known_size)
                        lines += f.read(size - known_size).count(b"\n")
            except FileNotFoundError:
                continue
            seen[key] = (size, lines)
            total += lines
        self._lines = seen
        return total

    def status(self) -> dict[str, int]:
        """`database.spool` of /health/status: bytes and records waiting, records dropped (never raises)."""
        try:
            return {"bytes": self.size(), "records": self.records(), "dropped": self.dropped()}
        except OSError as exc:
            log.warning("[spool] status unreadable: %s", exc.strerror or exc)
            return {"bytes": 0, "records": 0, "dropped": self._uncounted}

    def batches(self) -> list[Path]:
        return sorted(self.directory.glob("batch-*.jsonl")) if self.directory.exists() else []

    def pending(self) -> bool:
        """Anything waiting (records, or an outage's drops to report)? Cheap (three stat calls): called
        before every database write of a round."""
        return (
            (self.path.exists() and self.path.stat().st_size > 0) or bool(self.batches()) or self.outage_path.exists()
        )

    def size(self) -> int:
        total = 0
        for path in [self.path, *self.batches()]:
            with contextlib.suppress(FileNotFoundError):  # a replay may unlink a batch meanwhile
                total += path.stat().st_size
        return total

    def _cut_batch(self) -> None:
        """Move the current spool aside as the next numbered batch (under the lock, so no append is lost)."""
        with self._locked():
            if self.path.exists() and self.path.stat().st_size > 0:
                name = f"batch-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.jsonl"
                os.replace(self.path, self.directory / name)

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
                self._report_drops()
                return replayed
            replayed += self._replay_batches(batches)

    def _report_drops(self) -> None:
        """The outage's drops as one `spool_dropped` Event, now that the database takes writes again.

        The tally is taken (renamed) under the lock, so a drop counted meanwhile starts the next report;
        when the row cannot be written the tally goes back, merged with any newer one.
        """
        taken = self.directory / f"outage-drops.{uuid.uuid4().hex[:12]}.reporting"
        with self._locked():
            if not self.outage_path.exists():
                return
            os.replace(self.outage_path, taken)
        tally = _read_json(taken)
        try:
            apps.get_model("health", "Event").objects.create(
                kind="spool_dropped",
                title=f"{tally.get('dropped', 0)} record(s) dropped during a database outage: the spool was full",
                subject="database",
                body=(
                    f"Between {tally.get('firstAt')} and {tally.get('lastAt')} the database could not be written "
                    f"and {tally.get('dropped', 0)} record(s) did not fit the outage spool ({tally.get('reason')}); "
                    "they are lost. Raise SPOOL_MAX_BYTES or free the disk."
                ),
                data={**tally, "maxBytes": self.max_bytes},
            )
        except BaseException:
            with self._locked():
                newer = _read_json(self.outage_path)
                if newer:
                    kinds = dict(tally.get("kinds", {}))
                    for kind, n in newer.get("kinds", {}).items():
                        kinds[kind] = int(kinds.get(kind, 0)) + int(n)
                    tally = {
                        **newer,
                        "dropped": int(tally.get("dropped", 0)) + int(newer.get("dropped", 0)),
                        "firstAt": tally.get("firstAt", newer.get("firstAt")),
                        "kinds": kinds,
                    }
                _write_json(self.outage_path, tally)
                taken.unlink(missing_ok=True)
            raise
        taken.unlink(missing_ok=True)
        log.error(
            "[spool] %s record(s) were dropped during the outage (%s to %s): recorded as a spool_dropped event",
            tally.get("dropped", 0),
            tally.get("firstAt"),
            tally.get("lastAt"),
        )

    def _replay_batches(self, batches: list[Path]) -> int:

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
    spool = default_spool()
    if not spool.pending():
        return 0
    return run_db(spool.replay, retry=retry)


def write_or_spool(kind: str, payload: dict[str, Any], *, retry: bool = True) -> Any:
    """Apply a record through its handler now, or spool it when the database cannot be written.

    Older spooled records are replayed first, so what is written now never overtakes them. Returns
    the handler's result, or None when spooled (or dropped: the spool was full; see Spool.append).
    With `retry=False` one try is made (through the breaker, so it fails fast while open): for
    callers that already know the database is away.
    A non-transient error (an integrity error, a bug) is raised, never spooled.
    """
    handler = handler_for(kind)
    if handler is None:
        raise KeyError(f"no spool handler for {kind!r}")
    try:
        replay_pending(retry=retry)
        return run_db(handler, payload, retry=retry)
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        what = payload.get("model", kind)
        if default_spool().append(kind, payload):
            log.warning("[spool] Database unwritable (%s): %s %s spooled", type(exc).__name__, what, kind)
        else:  # append() has logged and counted the drop
            log.error("[spool] Database unwritable (%s): %s %s dropped, not spooled", type(exc).__name__, what, kind)
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
