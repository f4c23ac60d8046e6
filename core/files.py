"""Owner-only files: the var dir, the SQLite database, the spool, the tunnel ledger and the portal's logs.

The database holds live session keys (a superuser's session is code execution through a `command`
probe), so no other local user may read it, whatever umask the portal is started with (a login
shell's 022 made them 0644 and 0755). settings.py, imported first by every process of the portal
(gunicorn workers, qcluster and its forked workers, every management command), calls
`owner_only_umask()` before it creates anything, and `tighten()` over what an earlier run left
looser. doctor reports what is still looser (opsportal.doctor.check_file_modes). Only what the
portal makes (portal_paths) and only this user's own: LOG_DIR may be /var/log, shared with other
services, so nothing there but the portal's own log files is ever changed.

Two deliberate exceptions:
- `collectstatic` keeps the umask it was started with: static files are public, and nginx (another
  user) may serve them from STATIC_ROOT.
- Processes the portal starts for a service (core.procs) should get the umask the portal was
  started with (`child_umask()`), not 077: a restarted service may create a socket or files that
  other users (nginx, its group) must reach.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

OWNER_ONLY_MASK = 0o077  # the group and other bits a portal file never has
# Commands whose output is meant for other users: they keep the umask they were started with.
PUBLIC_COMMANDS = frozenset({"collectstatic"})
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
# What the portal makes in the var dir: files, and directories with all they hold (core.spool,
# tunnels.watchdog's ledger).
VAR_FILES = ("secret_key",)
# The default database (settings.py), counted even when DATABASE_URL now points elsewhere: an earlier run's
# copy still holds its sessions.
DEFAULT_DATABASE = "opsportal.sqlite3"
VAR_TREES = ("spool", "tunnels")
# The log files in LOG_DIR: build_logging's (opsportal/logconfig.py; a midnight rotation adds `.YYYY-MM-DD`)
# and the tunnel connectors' output (tunnels.watchdog: `tunnel-NAME.log`).
LOG_PATTERNS = ("system-monitor.log", "system-monitor.log.*", "tunnel-*.log", "tunnel-*.log.*")

_started_umask: int | None = None
# What tighten() changed in this process: (path, mode before). doctor shows it.
tightened: list[tuple[Path, int]] = []


def current_umask() -> int:
    """This process's umask, read without changing it (os.umask would, for a moment, in every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def owner_only_umask(argv: Sequence[str] | None = None) -> None:
    """Add 077 to the umask (unless the command is a public one); remember the umask we started with."""
    global _started_umask
    if _started_umask is None:
        _started_umask = current_umask()
    command = list(sys.argv if argv is None else argv)[1:2]
    if command and command[0] in PUBLIC_COMMANDS:
        return
    os.umask(current_umask() | OWNER_ONLY_MASK)


def child_umask() -> int:
    """The umask for a process the portal starts for a service: the one the portal itself was given."""
    return current_umask() if _started_umask is None else _started_umask


def sqlite_files(database: Mapping[str, Any]) -> list[Path]:
    """The files of a SQLite database setting (main file, WAL, shared memory, rollback journal)."""
    name = str(database.get("NAME") or "")
    if "sqlite" not in str(database.get("ENGINE", "")) or not name or name.startswith((":", "file:")):
        return []
    return [Path(name + suffix) for suffix in SQLITE_SUFFIXES]


def portal_paths(
    var_dir: Path, log_dir: Path, database: Mapping[str, Any] | None = None, *, public: Iterable[Path] = ()
) -> list[Path]:
    """Every existing path the portal made that must be owner-only, never following a symlink, and only
    this user's own (another owner's file is not the portal's, even under a portal name).

    The var dir, its secret_key, spool and tunnel ledger (with all they hold); the SQLite database's
    files wherever DATABASE_URL puts them (and the default database's in the var dir); the log files
    build_logging writes (with their rotations) and the tunnel connectors' logs. Nothing else: LOG_DIR
    may be /var/log, where other services keep their logs, and then the log dir itself keeps its mode
    too (they must still reach their own files). `public` directories (STATIC_ROOT, should it sit in
    the var dir) are left out with all they hold."""
    skip = {Path(p) for p in public}
    var_dir, log_dir = Path(var_dir), Path(log_dir)
    found: list[Path] = []
    if var_dir not in skip:
        found.append(var_dir)
        found.extend(var_dir / name for name in VAR_FILES)
        found.extend(var_dir / f"{DEFAULT_DATABASE}{suffix}" for suffix in SQLITE_SUFFIXES)
        for tree in (var_dir / name for name in VAR_TREES):
            if tree in skip or not tree.is_dir() or tree.is_symlink():
                continue
            found.append(tree)
            for root, dirs, names in os.walk(tree):
                dirs[:] = [d for d in dirs if Path(root, d) not in skip]  # os.walk does not descend into them
                found.extend(Path(root, name) for name in (*dirs, *names))
    if log_dir not in skip:
        names = _names(log_dir)
        ours = [n for n in names if is_portal_log(n)]
        if len(ours) == len(names):  # nothing but the portal's logs: the directory is the portal's too
            found.append(log_dir)
        found.extend(log_dir / name for name in ours)
    found.extend(sqlite_files(database or {}))
    return [p for p in dict.fromkeys(found) if _own(p)]


def is_portal_log(name: str) -> bool:
    """A log file name the portal writes in LOG_DIR (a doctor check's scratch file counts: it is gone at once)."""
    return name.startswith(".doctor-") or any(fnmatch.fnmatchcase(name, pattern) for pattern in LOG_PATTERNS)


def _names(directory: Path) -> list[str]:
    try:
        return os.listdir(directory) if directory.is_dir() and not directory.is_symlink() else []
    except OSError:
        return []


def _own(path: Path) -> bool:
    """An existing path, not a symlink, owned by this process's user."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return not stat.S_ISLNK(info.st_mode) and info.st_uid == os.geteuid()


def target_mode(mode: int) -> int:
    """The owner-only mode for a path's current mode: the owner's bits kept, group and other removed."""
    return stat.S_IMODE(mode) & ~OWNER_ONLY_MASK


def loose(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """(path, mode) for each path that another user could read, write or enter."""
    found: list[tuple[Path, int]] = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.lstat().st_mode)
        except OSError:  # gone since it was listed
            continue
        if mode & OWNER_ONLY_MASK:
            found.append((path, mode))
    return found


def tighten(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """Remove the group and other bits of each loose path; return what changed. A path this user may
    not chmod (another owner) stays as it is: doctor reports it."""
    changed: list[tuple[Path, int]] = []
    for path, mode in loose(paths):
        try:
            # Through a descriptor opened without following a symlink: a link swapped in is not followed.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # another owner's unreadable file, a socket, a symlink
            continue
        try:
            os.fchmod(fd, target_mode(mode))
            changed.append((path, mode))
        except OSError:
            pass
        finally:
            os.close(fd)
    tightened.extend(changed)
    return changed


def fix_command(path: Path, mode: int) -> str:
    return f"chmod {target_mode(mode):o} {path}"
