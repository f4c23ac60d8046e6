"""Local processes: find, identify (pid + create time), stop gracefully, start detached, run bounded.

Shared by the `process` and `command` probes, the `command` and `restart_process` actions and the
tunnel watchdog. Matching is on argv elements, never on a joined string, and never finds the portal's own
processes (portal_pids); a child's environment is minimal (child_env).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import logging
import os
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from core import files
from core.spec import ConfigError, Key, expand_env

log = logging.getLogger("opsportal.procs")


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
                return None  # it exited; its parent reaps it (the reaper, when start_detached started it here)
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def alive(self) -> bool:
        return self.process() is not None


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


# Programs that take a process's name or file as an argument without being that process: a match that
# follows one of them in argv (`tail -f /var/log/worker.log`, `pgrep -f worker`, `sudo vim worker.py`) is not
# the process, unless the pattern itself starts with the program (`tail -f worker.log`).
OBSERVERS = frozenset(
    {
        *("grep", "egrep", "fgrep", "rg", "ag", "ack", "pgrep", "pkill", "pidof", "pstree", "ps", "top", "htop"),
        *("tail", "head", "less", "more", "cat", "watch", "tee", "vi", "vim", "nvim", "view", "nano", "emacs"),
        *("kill", "killall", "strace", "ltrace", "gdb", "lsof", "journalctl"),
        # Service managers, container and cluster clients, remote shells: they name a process elsewhere.
        *("systemctl", "service", "supervisorctl", "docker", "docker-compose", "podman", "kubectl", "ssh"),
        # Runners: they start the program as their child (timeout, sudo, su, runuser, xargs, flock) or exec
        # into it (nohup, env, nice, setsid, stdbuf), so the program is always a process of its own as well.
        *("timeout", "sudo", "doas", "su", "runuser", "xargs", "flock", "nohup", "env", "nice", "ionice"),
        *("setsid", "stdbuf"),
    }
)
# How supervised_argv starts the portal's own supervisor: `timeout --signal=KILL -- SECONDS argv…`.
_SUPERVISOR_OPTIONS = ["--signal=KILL", "--"]
# The project this module belongs to: a process running its manage.py is the portal.
PROJECT_DIR = Path(__file__).resolve().parent.parent
_MANAGE_PY = PROJECT_DIR / "manage.py"
# The WSGI module gunicorn serves the portal from (`gunicorn opsportal.wsgi` or `opsportal.wsgi:application`).
_PORTAL_WSGI = "opsportal.wsgi"


def split_pattern(pattern: str) -> list[str]:
    """A `cmdline_contains` value as argv elements (shell quoting keeps an element with spaces whole)."""
    try:
        tokens = shlex.split(pattern)
    except ValueError as exc:
        raise ValueError(f"cannot be split into argv elements: {exc}") from None
    if not tokens:
        raise ValueError("cannot be split into argv elements: it is empty")
    return tokens


def _element_is(token: str, element: str, first: bool) -> bool:
    # Only the first token may name a program by its basename (`cloudflared` for /usr/local/bin/cloudflared).
    return element == token or (first and "/" not in token and os.path.basename(element) == token)


def argv_matches(tokens: Sequence[str], argv: Sequence[str]) -> bool:
    """True when `tokens` appear in argv as consecutive whole elements, not after an observer.

    The first token also matches an element whose basename it is (a program or a script by name);
    every later token must equal its element exactly.
    """
    if argv and os.path.basename(argv[0]) == "timeout" and list(argv[1:3]) == _SUPERVISOR_OPTIONS:
        return False  # the portal's own supervisor wrapper, even when the pattern names it: its child is the process
    n = len(tokens)
    for i in range(len(argv) - n + 1):
        if i and os.path.basename(argv[i - 1]) in OBSERVERS:
            return False  # everything after an observer is its argument
        if _element_is(tokens[0], argv[i], True) and all(argv[i + j] == tokens[j] for j in range(1, n)):
            return True
    return False


def _is_portal_entry(proc: psutil.Process, argv: Sequence[str]) -> bool:
    """A process of this portal by its argv: gunicorn serving opsportal.wsgi, or this project's manage.py."""
    for element in argv:
        if element == _PORTAL_WSGI or element.startswith(_PORTAL_WSGI + ":"):
            return True
        if os.path.basename(element) == "manage.py":
            try:
                path = Path(element) if os.path.isabs(element) else Path(proc.cwd()) / element
                if path.resolve() == _MANAGE_PY:
                    return True
            except (psutil.Error, OSError):
                continue
    return False


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def portal_pids() -> set[int]:
    """The portal's own processes, never matched and never stopped.

    This process and its ancestors; every process running this portal (gunicorn serving opsportal.wsgi, this
    project's manage.py: web, qcluster, runprobes, watchtunnels …) with its ancestors; and their descendants
    that stayed in their session (gunicorn and Django-Q2 workers). What the portal starts, it starts in a
    session of its own (start_detached, run_argv), so a service it started stays matchable: it is what a
    restart restarts.
    """
    me = os.getpid()
    parent: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for proc in psutil.process_iter(["ppid", "cmdline"]):
        ppid = proc.info["ppid"] or 0
        parent[proc.pid] = ppid
        children.setdefault(ppid, []).append(proc.pid)
        if proc.pid != me and _is_portal_entry(proc, proc.info["cmdline"] or []):
            roots.append(proc.pid)
    own: set[int] = set()
    # This process and every portal process, with their ancestors: stopping one would take the portal down.
    for start in (me, *roots):
        pid = start
        while pid and pid not in own:
            own.add(pid)
            pid = parent.get(pid, 0)
    # A portal process's workers: its descendants in its session. (Not this process's own children: when it
    # is not a portal entry itself, e.g. a test run, what it starts is what it looks for.)
    for root in roots:
        sid = _sid(root)
        stack, seen = list(children.get(root, [])), set()
        while stack and sid is not None:
            pid = stack.pop()
            if pid in seen or _sid(pid) != sid:
                continue
            seen.add(pid)
            own.add(pid)
            stack.extend(children.get(pid, []))
    return own


def _same_path(given: str, actual: str) -> bool:
    return os.path.realpath(given) == os.path.realpath(actual)


def _user_is(proc: psutil.Process, user: str) -> bool:
    return proc.uids().real == int(user) if user.isdigit() else proc.username() == user


def find_processes(
    process_name: str | None = None,
    cmdline_contains: str | None = None,
    pid_file: str | None = None,
    *,
    exe: str | None = None,
    user: str | None = None,
    cwd: str | None = None,
) -> list[psutil.Process]:
    """Live, non-zombie processes matching one criterion and every filter given; never the portal's own.

    `cmdline_contains` is split like a shell would (split_pattern) and matches consecutive whole argv
    elements (argv_matches). `exe` is the executable's resolved path, `user` a user name or uid, `cwd`
    the working directory (resolved). A process whose exe or cwd cannot be read does not match them.
    Raises ValueError for a `cmdline_contains` that split_pattern refuses (callers validate it at import).
    """
    tokens = split_pattern(cmdline_contains) if cmdline_contains else None
    own = portal_pids()
    found: list[psutil.Process] = []
    candidates = _pid_file_process(pid_file) if pid_file else list(psutil.process_iter(["name", "cmdline", "status"]))
    for proc in candidates:
        try:
            if proc.pid in own or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if process_name and proc.name() != process_name:
                continue
            if tokens and not argv_matches(tokens, proc.cmdline()):
                continue
            if exe and not _same_path(exe, proc.exe()):
                continue
            if user and not _user_is(proc, user):
                continue
            if cwd and not _same_path(cwd, proc.cwd()):
                continue
            found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def stop(procs: Sequence[psutil.Process], grace: float = 5.0) -> list[int]:
    """SIGTERM each process and its descendants, wait up to `grace` seconds, then SIGKILL what is left.

    A zombie counts as stopped: it has exited, and only its parent can reap it (another portal process's
    child stays a zombie until that process waits), so waiting for it to vanish would wait out the grace
    twice. The portal's own processes (portal_pids) and everything below them are never signalled, whoever
    asks. Returns the pids of the given processes that were stopped.
    """
    own = portal_pids()
    given: list[psutil.Process] = []
    targets: dict[int, psutil.Process] = {}
    for proc in procs:
        if proc.pid in own:
            continue
        try:
            below = _descendants_outside(proc, own)
        except psutil.NoSuchProcess:
            continue
        given.append(proc)
        targets.update({p.pid: p for p in [*below, proc]})
    for proc in targets.values():
        if not _stopped(proc):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
    alive = _wait_stopped(list(targets.values()), grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _wait_stopped(alive, grace)
    return [p.pid for p in given]


def _stopped(proc: psutil.Process) -> bool:
    """Exited: gone, its pid reused (psutil compares create times), or a zombie."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


def _wait_stopped(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` for every process to stop (_stopped); those still running.

    Never waitpid: a child of ours is reaped by its reaper (start_detached), psutil.wait_procs would take
    its exit status, and it waits on a zombie that is not ours until the timeout.
    """
    deadline = time.monotonic() + timeout
    left = [p for p in procs if not _stopped(p)]
    pause = 0.005
    while left and time.monotonic() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.1)
        left = [p for p in left if not _stopped(p)]
    return left


def _descendants_outside(proc: psutil.Process, own: set[int]) -> list[psutil.Process]:
    """proc's descendants, without the portal's own processes and their subtrees."""
    found: list[psutil.Process] = []
    stack = proc.children()
    while stack:
        child = stack.pop()
        if child.pid in own:
            continue
        found.append(child)
        with contextlib.suppress(psutil.NoSuchProcess):
            stack.extend(child.children())
    return found


# The portal's own secrets and wiring: never passed to a child, not even when a config names them
# (env_passthrough, or `${NAME}` in a kind's `env` or a tunnel's env or command: a ConfigError).
PORTAL_ONLY_ENV = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "METRICS_TOKEN",
    "DJANGO_SETTINGS_MODULE",
)
# What every child gets from the portal's environment (and LC_*); the rest only when its config names it.
BASE_ENV = ("PATH", "HOME", "LANG", "TZ")


def check_passthrough(names: Sequence[str]) -> None:
    """Refuse an env_passthrough that names one of the portal's own secrets (ValueError naming it)."""
    refused = [n for n in names if n in PORTAL_ONLY_ENV]
    if refused:
        raise ValueError(f"env_passthrough may not name the portal's own {', '.join(refused)}")


def child_env_keys(who: str) -> dict[str, Key]:
    """The `env` and `env_passthrough` keys of every kind that starts a child (`who` names it in the help)."""
    return {
        "env": Key("dict[str]", default={}, help="values may use ${ENV_VAR}"),
        "env_passthrough": Key("list[str]", default=[], help=f"names of the portal's variables the {who} gets"),
    }


def check_env_settings(cleaned: dict[str, Any], where: str) -> None:
    """Import-time check of `env_passthrough`: the portal's own secrets are refused, naming the key's table."""
    try:
        check_passthrough(cleaned.get("env_passthrough", []))
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def expand_child_env(cfg: dict[str, Any], secrets: list[str]) -> dict[str, str]:
    """A kind's `env` with its ${VAR}s expanded (their values collected in `secrets`); ConfigError for an unset
    variable, a `${NAME}` of PORTAL_ONLY_ENV or an `env_passthrough` the portal refuses."""
    try:
        check_passthrough(cfg["env_passthrough"])
    except ValueError as exc:
        raise ConfigError("", str(exc)) from None
    return {k: expand_env(v, secrets, refused=PORTAL_ONLY_ENV) for k, v in cfg["env"].items()}


def child_env(extra: dict[str, str] | None = None, passthrough: Sequence[str] = ()) -> dict[str, str]:
    """The environment for a child process: a minimal one, never the portal's wholesale.

    PATH, HOME, LANG, LC_* and TZ from ours; the variables `passthrough` names (a config's env_passthrough),
    when set; then `extra` (a config's `env`, already expanded).
    """
    check_passthrough(passthrough)
    env = {k: v for k, v in os.environ.items() if k in BASE_ENV or k.startswith("LC_")}
    env.update({k: os.environ[k] for k in passthrough if k in os.environ})
    env.update(extra or {})
    return env


def start_detached(
    argv: Sequence[str],
    log_file: str | None = None,
    env: dict[str, str] | None = None,
    *,
    passthrough: Sequence[str] = (),
) -> ProcRef:
    """Start argv (never a shell) in its own session, output appended to log_file; env as child_env().

    The process is reaped the moment it exits (_reap_when_done), so it never lingers as a zombie of this
    (long-lived web or qcluster) process, and a stop() from another process never waits on it.
    """
    env = child_env(env, passthrough)  # before the log file opens: a refused passthrough starts nothing
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
            env=env,
            umask=files.child_umask(),  # the operator's umask, not the portal's own 077
        )
    finally:
        out.close()
    try:
        # Read before the reaper may collect it: a process that exits at once is still a zombie here.
        ref = ProcRef(child.pid, psutil.Process(child.pid).create_time())
    finally:
        _reap_when_done(child)
    return ref


# --- reaping what start_detached starts ----------------------------------------------------------------

# start_detached's children that have not been reaped yet, by pid. A forked child (Django-Q2 forks its
# workers) starts with none: they are its parent's children, and the reaper threads stay in the parent.
_reaping: dict[int, subprocess.Popen[bytes]] = {}
_reaping_lock = threading.Lock()


def _reap_when_done(child: subprocess.Popen[bytes]) -> None:
    """Wait for the child in a daemon thread of its own, so it is reaped as soon as it exits.

    By its pid only (Popen.wait, which also keeps subprocess from reaping it twice), never waitpid(-1),
    which would take the exit statuses run_argv and subprocess wait for in this same process; and no SIGCHLD
    handler, which gunicorn and Django-Q2 would fight over. One thread a child: the portal starts few
    (restarted services, tunnel connectors), and a blocked wait costs no CPU.
    """
    with _reaping_lock:
        _reaping[child.pid] = child
    threading.Thread(target=_wait_and_forget, args=(child,), name=f"reap-{child.pid}", daemon=True).start()


def _wait_and_forget(child: subprocess.Popen[bytes]) -> None:
    try:
        child.wait()
    finally:
        with _reaping_lock:
            if _reaping.get(child.pid) is child:
                del _reaping[child.pid]


def unreaped() -> list[int]:
    """The pids start_detached started in this process that have not been reaped yet (running, or just exited)."""
    with _reaping_lock:
        return sorted(_reaping)


def reap_exited(timeout: float = 1.0) -> list[int]:
    """Wait up to `timeout` until every started child that has exited (a zombie) is reaped; those left.

    The reaper threads do it by themselves at once; this is for a caller that must see it done (a test, a
    check that then counts zombies).
    """
    with _reaping_lock:
        children = list(_reaping.values())
    deadline = time.monotonic() + timeout
    left: list[int] = []
    for child in children:
        try:
            if psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
                continue
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except psutil.NoSuchProcess:
            continue
        except subprocess.TimeoutExpired:
            left.append(child.pid)
    return left


def _forget_parents_children() -> None:
    global _reaping_lock
    _reaping_lock = threading.Lock()  # another thread may have held it at the fork
    _reaping.clear()


os.register_at_fork(after_in_child=_forget_parents_children)


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
    passthrough: Sequence[str] = (),
    on_start: Callable[[StartedChild], None] | None = None,
) -> Completed:
    """Run argv (never a shell) in its own session, env as child_env(env, passthrough); wait at most `timeout`.

    On timeout the whole process group is killed, and the pipes are read for at most
    PIPE_GRACE_SECONDS more: a descendant that left the group may hold them open forever.
    The argv runs under a supervisor (supervised_argv) that kills its group SUPERVISOR_GRACE_SECONDS after
    `timeout` by itself, so the bound holds even when this process dies (SIGKILL, OOM) mid-run.
    `on_start` (default: the one set by on_child_start) is told the group as soon as it runs.
    Raises OSError when argv cannot be started.
    """
    if isinstance(argv, str | bytes):
        raise TypeError("run_argv takes an argv list, never a shell string")
    child_environment = child_env(env, passthrough)
    _check_runnable(argv, child_environment, cwd)
    started = time.monotonic()
    child = subprocess.Popen(
        supervised_argv(argv, timeout),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        env=child_environment,
        cwd=cwd,
        start_new_session=True,  # so a timeout can kill the whole group
        close_fds=True,
        umask=files.child_umask(),  # the operator's umask, not the portal's own 077
    )
    _tell_started(child, timeout, on_start or _on_child_start.get())
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


# The supervisor's own kill comes this long after the timeout: run_argv's kill at the timeout stays the one
# that acts while this process lives (so a timeout reads as a timeout); the supervisor's is the backstop.
SUPERVISOR_GRACE_SECONDS = 2.0
# How long `timeout --version` may take when the supervisor is first looked up.
SUPERVISOR_CHECK_SECONDS = 5.0


@functools.cache
def supervisor() -> str | None:
    """GNU coreutils `timeout` on PATH, else None (argv runs unsupervised). Looked up once, at first use.

    It leads the child's process group and SIGKILLs the whole group at its deadline, whether or not its
    parent (the portal) is still there. Only GNU's takes supervised_argv's `--signal=KILL -- 12.000s`
    (BusyBox's rejects it, and every command would fail), so another `timeout` counts as none.
    """
    path = shutil.which("timeout")
    if path is None:
        return None
    try:
        done = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"},  # no portal secret to a child
            timeout=SUPERVISOR_CHECK_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        log.warning("procs: %s --version failed: commands run unsupervised", path)
        return None
    if done.returncode != 0 or b"GNU coreutils" not in done.stdout:
        log.warning("procs: %s is not GNU coreutils timeout: commands run unsupervised", path)
        return None
    return path


def __getattr__(name: str) -> Any:
    # `SUPERVISOR` as it was before the lookup became lazy: supervisor()'s answer.
    if name == "SUPERVISOR":
        return supervisor()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class StartedChild:
    """A group run_argv started: its leader (pid + create time), this host, and when its supervisor kills it."""

    pid: int
    create_time: float
    host: str
    kill_by: float  # a time.time() value: the supervisor's deadline (timeout + SUPERVISOR_GRACE_SECONDS)
    supervised: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "createTime": self.create_time,
            "host": self.host,
            "killBy": self.kill_by,
            "supervised": self.supervised,
        }


_on_child_start: contextvars.ContextVar[Callable[[StartedChild], None] | None] = contextvars.ContextVar(
    "opsportal_on_child_start", default=None
)


@contextlib.contextmanager
def on_child_start(callback: Callable[[StartedChild], None]) -> Iterator[None]:
    """Within the block, run_argv (in this thread) tells `callback` of each group it starts: the recovery
    engine records an action's group with its attempt without every action passing the callback along."""
    reset = _on_child_start.set(callback)
    try:
        yield
    finally:
        _on_child_start.reset(reset)


def supervised_argv(argv: Sequence[str], timeout: float) -> list[str]:
    """argv under the supervisor: `timeout --signal=KILL -- SECONDS argv…` (no shell; argv stays a list)."""
    path = supervisor()
    if path is None:
        return list(argv)
    return [path, "--signal=KILL", "--", f"{timeout + SUPERVISOR_GRACE_SECONDS:.3f}s", *argv]


def _check_runnable(argv: Sequence[str], environment: dict[str, str], cwd: str | os.PathLike[str] | None) -> None:
    # Under the supervisor a missing program would be its exit 127; say it as Popen would (an OSError).
    if supervisor() is None or not argv:
        return
    program = str(argv[0])
    if os.sep in program:
        path = Path(cwd or ".") / program
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if path.is_dir() or not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
    elif shutil.which(program, path=environment.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def _tell_started(
    child: subprocess.Popen[bytes], timeout: float, callback: Callable[[StartedChild], None] | None
) -> None:
    if callback is None:
        return
    try:
        create_time = psutil.Process(child.pid).create_time()
    except psutil.Error:
        return  # already gone: nothing could be orphaned
    started = StartedChild(
        pid=child.pid,
        create_time=create_time,
        host=socket.gethostname()[:32],
        kill_by=time.time() + timeout + SUPERVISOR_GRACE_SECONDS,
        supervised=supervisor() is not None,
    )
    try:
        callback(started)
    except Exception:  # the record is a help for a takeover; the run itself goes on
        log.warning("run_argv: on_start callback failed for pid %d", child.pid, exc_info=True)


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
