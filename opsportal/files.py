"""Owner-only files: the var dir, the SQLite database, the spool, the tunnel ledger and the logs.

The database holds live session keys (a superuser's session is code execution through a `command`
probe), so no other local user may read it, whatever umask the portal is started with (a login
shell's 022 made them 0644 and 0755). settings.py, imported first by every process of the portal
(gunicorn workers, qcluster and its forked workers, every management command), calls
`owner_only_umask()` before it creates anything, and `tighten()` over what an earlier run left
looser. doctor reports what is still looser (opsportal.doctor.check_file_modes).

Two deliberate exceptions:
- `collectstatic` keeps the umask it was started with: static files are public, and nginx (another
  user) may serve them from STATIC_ROOT.
- Processes the portal starts for a service (opsportal.procs) should get the umask the portal was
  started with (`child_umask()`), not 077: a restarted service may create a socket or files that
  other users (nginx, its group) must reach.
"""

from __future__ import annotations

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
    """Every existing path that must be owner-only: the var and log dirs with all they hold (never
    following a symlink), and the SQLite database's files wherever DATABASE_URL puts them. `public`
    directories (STATIC_ROOT, should it sit in the var dir) are left out with all they hold."""
    skip = {Path(p) for p in public}
    found: list[Path] = []
    for top in (Path(var_dir), Path(log_dir)):
        if not top.is_dir() or top.is_symlink() or top in skip:
            continue
        found.append(top)
        for root, dirs, names in os.walk(top):
            dirs[:] = [d for d in dirs if Path(root, d) not in skip]  # os.walk does not descend into them
            found.extend(Path(root, name) for name in (*dirs, *names))
    found.extend(p for p in sqlite_files(database or {}) if p.exists())
    return [p for p in dict.fromkeys(found) if not p.is_symlink()]


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
