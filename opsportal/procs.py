"""Local processes: find, identify (pid + create time), stop gracefully, start detached, run bounded.

Shared by the `process` and `command` probes, the `command` and `restart_process` actions and the
tunnel watchdog.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil


@dataclass(frozen=True)
class ProcRef:
    """A process identity that survives pid reuse: the pid and its create time."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, proc: psutil.Process) -> ProcRef:
        return cls(proc.pid, proc.create_time())

    def process(self) -> psutil.Process | None:
        """The live process, or None when it is gone, a zombie, or the pid was reused."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.01:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                _reap(proc)
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def alive(self) -> bool:
        return self.process() is not None


def _reap(proc: psutil.Process) -> None:
    # A zombie child of ours is collected so it does not pile up.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)


def read_pid_file(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


# Seconds a process may appear to start after its pid file was written (timestamp granularity).
PID_FILE_SLACK = 1.0


def _pid_file_process(path: str) -> list[psutil.Process]:
    """The process a pid file names; none when it is gone or the pid now belongs to a newer process."""
    pid = read_pid_file(path)
    if not pid:
        return []
    try:
        proc = psutil.Process(pid)
        # A process started after the file was written is not the one it names: the pid was reused.
        if proc.create_time() > Path(path).stat().st_mtime + PID_FILE_SLACK:
            return []
    except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
        return []
    return [proc]


def find_processes(
    process_name: str | None = None,
    cmdline_contains: str | None = None,
    pid_file: str | None = None,
) -> list[psutil.Process]:
    """Live, non-zombie processes matching one criterion; never this process itself."""
    me = os.getpid()
    found: list[psutil.Process] = []
    candidates = _pid_file_process(pid_file) if pid_file else list(psutil.process_iter(["name", "cmdline", "status"]))
    for proc in candidates:
        try:
            if proc.pid == me or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if process_name and proc.name() != process_name:
                continue
            if cmdline_contains and cmdline_contains not in " ".join(proc.cmdline()):
                continue
            found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def stop(procs: Sequence[psutil.Process], grace: float = 5.0) -> list[int]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL what is left; returns the pids stopped."""
    targets: list[psutil.Process] = []
    for proc in procs:
        try:
            targets.extend([*proc.children(recursive=True), proc])
        except psutil.NoSuchProcess:
            continue
    for proc in targets:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(targets, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    return [p.pid for p in procs]


# The portal's own secrets and wiring; a process the portal starts or checks has no use for them.
PORTAL_ONLY_ENV = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "METRICS_TOKEN",
    "DJANGO_SETTINGS_MODULE",
)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours without the portal's secrets, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PORTAL_ONLY_ENV}
    env.update(extra or {})
    return env


def start_detached(argv: Sequence[str], log_file: str | None = None, env: dict[str, str] | None = None) -> ProcRef:
    """Start argv (never a shell) in its own session, output appended to log_file."""
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        out = open(log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
    else:
        out = open(os.devnull, "wb")  # noqa: SIM115
    try:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=child_env(env),
        )
    finally:
        out.close()
    return ProcRef(child.pid, psutil.Process(child.pid).create_time())


# After a timeout kill, how long to wait for the output pipes to close.
PIPE_GRACE_SECONDS = 1.0
# How much of each output stream run_argv keeps; the rest is read and dropped so the child never blocks.
MAX_OUTPUT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Completed:
    """What run_argv saw. returncode is None only if the killed child could not even be reaped."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration: float  # seconds, from the start until the output ended (or until the kill and its grace)
    truncated: bool = False


class _Capped:
    """One output stream, at most `cap` bytes of it: the first (head) or the last (tail)."""

    def __init__(self, cap: int, keep: Literal["head", "tail"]) -> None:
        self.cap, self.keep = cap, keep
        self.buf = bytearray()
        self.seen = 0

    def add(self, data: bytes) -> None:
        self.seen += len(data)
        if self.keep == "head":
            self.buf += data[: max(0, self.cap - len(self.buf))]
        else:
            self.buf += data
            del self.buf[: max(0, len(self.buf) - self.cap)]


def _drain(sel: selectors.BaseSelector, deadline: float) -> bool:
    """Read every registered pipe to its end; False when the deadline comes first."""
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        for key, _ in sel.select(left):
            data = os.read(key.fd, 65536)
            if data:
                key.data.add(data)
            else:
                sel.unregister(key.fileobj)
    return True


def run_argv(
    argv: Sequence[str],
    timeout: float,
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    merge_stderr: bool = False,
    max_output: int = MAX_OUTPUT_BYTES,
    keep: Literal["head", "tail"] = "head",
) -> Completed:
    """Run argv (never a shell) in its own session, with `env` over child_env(); wait at most `timeout`.

    On timeout the whole process group is killed, and the pipes are read for at most
    PIPE_GRACE_SECONDS more: a descendant that left the group may hold them open forever.
    Raises OSError when argv cannot be started.
    """
    if isinstance(argv, str | bytes):
        raise TypeError("run_argv takes an argv list, never a shell string")
    started = time.monotonic()
    child = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        env=child_env(env),
        cwd=cwd,
        start_new_session=True,  # so a timeout can kill the whole group
        close_fds=True,
    )
    out, err = _Capped(max_output, keep), _Capped(max_output, keep)
    try:
        with selectors.DefaultSelector() as sel:
            for pipe, capped in ((child.stdout, out), (child.stderr, err)):
                if pipe:  # no stderr pipe when it is folded into stdout
                    sel.register(pipe, selectors.EVENT_READ, capped)
            deadline = started + timeout
            finished = _drain(sel, deadline) and _wait(child, deadline)
            if not finished:
                _kill_group(child)
                _drain(sel, time.monotonic() + PIPE_GRACE_SECONDS)
            duration = time.monotonic() - started
    except BaseException:
        _kill_group(child)  # interrupted (a worker shutting down): leave nothing running
        raise
    finally:
        for pipe in (child.stdout, child.stderr):
            if pipe:
                pipe.close()
        _wait(child, time.monotonic() + PIPE_GRACE_SECONDS)  # done or SIGKILLed: returns at once
    return Completed(
        returncode=child.returncode,
        stdout=bytes(out.buf),
        stderr=bytes(err.buf),
        timed_out=not finished,
        duration=duration,
        truncated=max(out.seen, err.seen) > max_output,
    )


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    # The child leads its own group (start_new_session), so its pid is the group id.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def _wait(child: subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait for the child to exit until the deadline; True when it did."""
    try:
        child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def alive_after(ref: ProcRef, settle: float) -> bool:
    """True when the process is still alive after `settle` seconds."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if not ref.alive():
            return False
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return ref.alive()


def describe(proc: psutil.Process) -> str:
    try:
        uptime = time.time() - proc.create_time()
        rss = proc.memory_info().rss / (1024 * 1024)
        return f"pid {proc.pid}, up {format_duration(uptime)}, rss {rss:.1f} MiB"
    except psutil.NoSuchProcess:
        return f"pid {proc.pid} (gone)"


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
