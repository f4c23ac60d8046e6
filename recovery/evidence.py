"""Evidence before repair: what a restart is about to destroy, captured and kept with the attempt.

Before an action that stops or restarts something runs (`restart_process`, `restart_tunnel`,
`restart_container`, and `command` with `capture_evidence = true`: the kind's `captures_evidence()`), the
engine calls `capture()` and stores the result in `RecoveryAttempt.evidence` (the same row, so the
attempt's retention applies). The action kind says what it would stop through small hooks on
recovery.actions.base.Action: `evidence_targets()` (the processes; their children are added here),
`evidence_logs()` (log files it knows of, beside the service's `evidence_log`) and `evidence_extra()`
(anything else, e.g. a container's state and log lines).

The shape (every key always present unless marked "?"):

    {
      "captured_at": "2026-12-01T16:40:00.123456+00:00",   # ISO 8601, UTC
      "took_ms": 12.3,
      "processes": [                                    # what is about to be stopped, then its children
        {"pid": 4242, "ppid": 1, "name": "python3", "status": "sleeping",
         "cmdline": ["python3", "server.py", "--password=••••••"],   # masked
         "started_at": "…", "age_s": 3600.5, "rss_bytes": 12345678, "cpu_percent": 0.0,
         "listening": [{"ip": "127.0.0.1", "port": 8080}],
         "error"?: "access denied"}                     # some details could not be read
      ],
      "logs": [                                         # the last `evidence_lines` lines of each file
        {"path": "/var/log/app.log", "lines": ["…masked…"], "truncated": true,  # older lines left out
         "error"?: "no such file"}                      # a missing/unreadable file: an entry, not a failure
      ],
      "probe": [{"checked_at": "…", "status": "down", "detail": "…"}],   # the last results, oldest first
      "container"?: {"name", "status", "running", "exit_code", "pid", "started_at", "finished_at",
                     "oom_killed", "health", "error"},  # restart_container (its log lines are a
                                                        # "logs" entry with path "docker:<name>")
      "truncated"?: true,                               # the whole was cut to MAX_BYTES
      "incomplete"?: "timeout after 2 s (logs not read: /var/log/b.log)"   # or "access denied: …"
    }

Bounds: a log file is read from its end (at most LOG_READ_BYTES, never the whole file; only regular
files, so a FIFO or a device never blocks), lines are cut to LINE_CHARS, at most MAX_PROCESSES
processes, and the JSON is cut to MAX_BYTES (older log lines first). Secrets are scrubbed the way the
recovery output is (core.spec.scrub with the values of the service's and the action's `${VAR}`s, `*_env`
variables and secret-named keys, plus the portal's own secrets and every environment variable whose
name says secret, e.g. `*_PASSWORD`, `*_TOKEN`), then masked (core.mask: URL credentials, `password=`,
secret query parameters).

Time: capture never delays the repair by more than the service's `evidence_timeout`. The database reads
(the last probe results, the hooks' lookups) run first in the calling thread; everything that reads the
system (psutil, files, the Docker socket) runs in a worker thread joined with what is left of the budget
and checking the deadline between steps. On timeout the capture keeps what was gathered and says
"incomplete"; the worker stops at its next step. Evidence that fails is an "incomplete" note, never a
failed repair.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import psutil
from django.utils import timezone

from core.mask import MASK, mask
from core.procs import PORTAL_ONLY_ENV, portal_pids
from core.spec import env_refs, scrub, secret_parts

log = logging.getLogger("opsportal.recovery")

MAX_BYTES = 64 * 1024  # the whole evidence, as JSON
LOG_READ_BYTES = 128 * 1024  # read from the end of each file, at most
LINE_CHARS = 1000
MAX_PROCESSES = 50
MAX_LOGS = 20
PROBE_RESULTS = 5
PROBE_DETAIL_CHARS = 500
CPU_SAMPLE_SECONDS = 0.1  # cpu_percent is measured over this (less when the budget is short)

Step = Callable[["Gathered"], None]


class Gathered:
    """What the worker has gathered so far; the caller takes a copy when the deadline passes."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {"processes": [], "logs": []}
        self.notes: list[str] = []
        self.pending: list[str] = []  # what is not gathered yet, for the "incomplete" note
        self.stopped = False

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def over(self) -> bool:
        return self.stopped or time.monotonic() >= self.deadline

    def add(self, key: str, entry: Any) -> None:
        with self.lock:
            self.data.setdefault(key, []).append(entry)

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self.data[key] = value

    def note(self, text: str) -> None:
        with self.lock:
            if text not in self.notes:
                self.notes.append(text)

    def snapshot(self) -> tuple[dict[str, Any], list[str], list[str]]:
        with self.lock:
            return copy.deepcopy(self.data), list(self.notes), list(self.pending)


class Masker:
    """Scrubs the known secret values, then masks what looks like a credential (core.mask)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = list(dict.fromkeys(secrets))

    def text(self, value: str) -> str:
        cleaned = mask(scrub(value, self.secrets))
        return cleaned if isinstance(cleaned, str) else MASK

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string in it masked."""
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return self.text(value) if isinstance(value, str) else value

    def argv(self, argv: list[str]) -> list[str]:
        """A command line with secrets masked: also the value after (or in) a flag that names one."""
        out: list[str] = []
        secret_next = False
        for arg in argv:
            if secret_next:
                out.append(MASK)
                secret_next = False
                continue
            flag, eq, value = arg.partition("=")
            if arg.startswith("-") and eq and mask(value, flag) == MASK:
                out.append(f"{flag}={MASK}")
                continue
            if arg.startswith("-") and not eq and mask("x", arg) == MASK:
                secret_next = True
            out.append(self.text(arg))
        return out


def settings_secrets(settings: Any, key: str = "") -> list[str]:
    """The secrets a kind's settings hold or point to: `${VAR}` values, `*_env` variables, the values of
    secret-named keys (as core.mask names them), URL credentials."""
    found: list[str] = []
    if isinstance(settings, dict):
        for k, v in settings.items():
            found += settings_secrets(v, str(k))
        return found
    if isinstance(settings, list):
        for v in settings:
            found += settings_secrets(v, key)
        return found
    if not isinstance(settings, str):
        return found
    for name in env_refs(settings):
        if name in os.environ:
            found += secret_parts(os.environ[name])
    if key.endswith("_env") and settings in os.environ:
        found += secret_parts(os.environ[settings])
    if "${" not in settings and mask(settings, key) != settings:
        found += secret_parts(settings)
    return found


def environment_secrets() -> list[str]:
    """The portal's own secrets and every environment variable whose name says secret (`*_PASSWORD`, …)."""
    found: list[str] = []
    for name, value in os.environ.items():
        if name in PORTAL_ONLY_ENV or mask("x", name) == MASK:
            found += secret_parts(value)
    return found


def capture(action: Any, service: Any, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The evidence for one attempt (the shape above); never raises, never takes longer than the service's
    `evidence_timeout` (plus the calling thread's database reads)."""
    started = time.monotonic()
    budget = float(getattr(service, "evidence_timeout", 2.0) or 2.0)
    gathered = Gathered(started + budget)
    captured_at = timezone.now()
    secrets = [*environment_secrets(), *settings_secrets(service.settings or {}), *settings_secrets(settings or {})]
    secrets += list(getattr(action, "secrets", []) or [])
    masker = Masker(secrets)
    evidence: dict[str, Any] = {"captured_at": captured_at.isoformat(), "took_ms": 0.0}
    try:
        evidence["probe"] = probe_details(service, masker)
    except Exception as exc:  # the database or a bug: evidence is best effort
        evidence["probe"] = []
        gathered.note(f"probe results not read: {type(exc).__name__}")
    targets: list[psutil.Process] = []
    try:
        targets = list(action.evidence_targets())
    except Exception as exc:
        gathered.note(f"processes not found: {_reason(exc)}")
    logs = _paths([*(getattr(service, "evidence_log", None) or []), *_safe(action.evidence_logs, gathered)])
    lines = int(getattr(service, "evidence_lines", 100) or 100)
    steps: list[tuple[str, Step]] = [("processes", lambda g: gather_processes(targets, g, masker))]
    steps += [(f"log {p}", lambda g, p=p: g.add("logs", read_tail(p, lines, masker, g))) for p in logs]
    steps.append((f"the {action.kind} details", lambda g: _extra(action, g, lines, masker)))
    gathered.pending = [name for name, _ in steps]
    worker = threading.Thread(target=_work, args=(steps, gathered), name="recovery-evidence", daemon=True)
    worker.start()
    worker.join(gathered.left())
    gathered.stopped = True  # the worker stops at its next step
    data, notes, pending = gathered.snapshot()
    evidence.update(data)
    if worker.is_alive() or pending:  # (a worker that saw the deadline first has left steps undone)
        what = ", ".join(p.removeprefix("log ") for p in pending[:5])
        notes.insert(0, f"timeout after {budget:g} s" + (f" (not gathered: {what})" if what else ""))
    if notes:
        evidence["incomplete"] = masker.text("; ".join(notes))[:500]
    evidence["took_ms"] = round((time.monotonic() - started) * 1000, 1)
    return bounded(evidence)


def _work(steps: list[tuple[str, Step]], gathered: Gathered) -> None:
    for name, step in steps:
        if gathered.over():
            return
        try:
            step(gathered)
        except Exception as exc:  # one source's trouble never loses the others
            gathered.note(f"{name}: {_reason(exc)}")
        with gathered.lock:
            if name in gathered.pending:
                gathered.pending.remove(name)


def _safe(hook: Callable[[], list[str]], gathered: Gathered) -> list[str]:
    try:
        return list(hook())
    except Exception as exc:
        gathered.note(f"log files not known: {_reason(exc)}")
        return []


def _paths(paths: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(str(p) for p in paths if p))[:MAX_LOGS]


def _extra(action: Any, gathered: Gathered, lines: int, masker: Masker) -> None:
    extra = action.evidence_extra(gathered.left(), lines) or {}
    for key, value in extra.items():
        if key == "logs":
            for entry in value:
                entry["lines"] = [masker.text(line)[:LINE_CHARS] for line in entry.get("lines", [])]
                gathered.add("logs", entry)
        else:
            gathered.put(key, masker.value(value))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, psutil.AccessDenied | PermissionError):
        return "access denied"
    return type(exc).__name__


def probe_details(service: Any, masker: Masker) -> list[dict[str, Any]]:
    """The service's last probe results, oldest first: what led to this repair."""
    if getattr(service, "pk", None) is None:
        return []
    rows = service.results.order_by("-checked_at", "-pk").values("checked_at", "status", "detail")[:PROBE_RESULTS]
    return [
        {
            "checked_at": row["checked_at"].isoformat(),
            "status": row["status"],
            "detail": masker.text(row["detail"] or "")[:PROBE_DETAIL_CHARS],
        }
        for row in reversed(list(rows))
    ]


def gather_processes(targets: list[psutil.Process], gathered: Gathered, masker: Masker) -> None:
    """The targets and their children (never the portal's own processes), with a CPU sample."""
    own = portal_pids()
    tree: dict[int, psutil.Process] = {}
    for proc in targets:
        if gathered.over() or len(tree) >= MAX_PROCESSES:
            break
        if proc.pid in own:
            continue
        tree.setdefault(proc.pid, proc)
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                if child.pid not in own:
                    tree.setdefault(child.pid, child)
    procs = list(tree.values())[:MAX_PROCESSES]
    if len(tree) > MAX_PROCESSES:
        gathered.note(f"only the first {MAX_PROCESSES} processes kept")
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.cpu_percent(None)  # the sample's start
    sample = min(CPU_SAMPLE_SECONDS, gathered.left() / 4)
    if procs and sample > 0:
        time.sleep(sample)
    for proc in procs:
        if gathered.over():
            return
        entry = describe(proc, masker)
        if entry.get("error") == "access denied":
            gathered.note("access denied to some process details")
        if entry:
            gathered.add("processes", entry)


def describe(proc: psutil.Process, masker: Masker) -> dict[str, Any]:
    """One process as the evidence keeps it ({} when it is already gone)."""
    entry: dict[str, Any] = {"pid": proc.pid}
    try:
        with proc.oneshot():
            created = proc.create_time()
            entry.update(
                ppid=proc.ppid(),
                name=proc.name(),
                status=proc.status(),
                started_at=datetime.fromtimestamp(created, UTC).isoformat(),
                age_s=round(max(0.0, time.time() - created), 1),
            )
            denied = False
            try:
                entry["cmdline"] = masker.argv(proc.cmdline())
            except psutil.AccessDenied:
                entry["cmdline"], denied = [], True
            try:
                entry["rss_bytes"] = proc.memory_info().rss
                entry["cpu_percent"] = round(proc.cpu_percent(None), 1)
            except psutil.AccessDenied:
                entry["rss_bytes"], entry["cpu_percent"], denied = None, None, True
            try:
                entry["listening"] = listening(proc)
            except psutil.AccessDenied:
                entry["listening"], denied = [], True
            if denied:
                entry["error"] = "access denied"
    except psutil.NoSuchProcess:
        return {}
    except psutil.AccessDenied:
        entry["error"] = "access denied"
    return entry


def listening(proc: psutil.Process) -> list[dict[str, Any]]:
    """The TCP ports the process listens on."""
    found = []
    for conn in proc.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr:
            found.append({"ip": conn.laddr.ip, "port": conn.laddr.port})
    return sorted(found, key=lambda c: (c["port"], c["ip"]))


def read_tail(path: str, lines: int, masker: Masker, gathered: Gathered | None = None) -> dict[str, Any]:
    """The last `lines` lines of a regular file, read from its end (at most LOG_READ_BYTES), masked.

    A missing or unreadable file, or one that is not a regular file (a FIFO or a device would block or
    never end), is an entry with an "error"."""
    entry: dict[str, Any] = {"path": path, "lines": [], "truncated": False}
    try:
        # O_NONBLOCK: opening a FIFO never waits for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return {**entry, "error": "no such file"}
    except PermissionError:
        if gathered is not None:
            gathered.note(f"access denied: {path}")
        return {**entry, "error": "permission denied"}
    except OSError as exc:
        return {**entry, "error": (exc.strerror or type(exc).__name__).lower()}
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return {**entry, "error": "not a regular file"}
        start = max(0, info.st_size - LOG_READ_BYTES)
        handle.seek(start)
        data = handle.read(LOG_READ_BYTES)
    text = data.decode("utf-8", errors="replace")
    found = text.splitlines()
    if start > 0 and found:
        found = found[1:]  # the first is most likely cut
    kept = found[-lines:]
    entry["truncated"] = start > 0 or len(found) > len(kept)
    # Scrubbed whole, then split: a secret across lines would otherwise leave a part behind.
    cleaned = masker.text("\n".join(kept)).split("\n") if kept else []
    entry["lines"] = [line[:LINE_CHARS] for line in cleaned]
    return entry


def bounded(evidence: dict[str, Any], limit: int = MAX_BYTES) -> dict[str, Any]:
    """The evidence cut to `limit` bytes of JSON: older log lines go first, then processes, then probes."""
    size = len(json.dumps(evidence, default=str).encode())
    while size > limit:
        logs = [e for e in evidence.get("logs", []) if e.get("lines")]
        if logs:
            biggest = max(logs, key=lambda e: len(json.dumps(e["lines"])))
            keep = len(biggest["lines"]) // 2
            biggest["lines"] = biggest["lines"][-keep:] if keep else []
            biggest["truncated"] = True
        elif len(evidence.get("processes", [])) > 1:
            evidence["processes"] = evidence["processes"][: len(evidence["processes"]) // 2]
        elif evidence.get("probe"):
            evidence["probe"] = evidence["probe"][1:]
        else:
            evidence.pop("container", None)
            evidence["processes"] = []
            evidence["truncated"] = True
            break
        evidence["truncated"] = True
        size = len(json.dumps(evidence, default=str).encode())
    return evidence
