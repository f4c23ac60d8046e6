"""Version and build information for `/health/live` and the dashboard footer.

The commit comes from `BUILD_COMMIT` (set by a packaging step) or, in a git checkout, from
`.git/HEAD` and the ref it names, read as files: no subprocess, and cheap enough for a liveness probe.
"""

from __future__ import annotations

import os
import re
import tomllib
import zlib
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
_SHA = re.compile(r"^[0-9a-f]{40}$")


@cache
def version() -> str:
    try:
        with (BASE_DIR / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def _git_dir(base: Path) -> Path | None:
    dot_git = base / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():  # a worktree: `gitdir: /path/to/.git/worktrees/name`
        text = dot_git.read_text().strip()
        if text.startswith("gitdir:"):
            return (base / text.removeprefix("gitdir:").strip()).resolve()
    return None


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    for root in (git_dir, _common_dir(git_dir)):
        path = root / ref
        if path.is_file():
            return path.read_text().strip()
        packed = root / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
    return None


def _common_dir(git_dir: Path) -> Path:
    common = git_dir / "commondir"
    return (git_dir / common.read_text().strip()).resolve() if common.is_file() else git_dir


def git_commit(base: Path = BASE_DIR) -> str | None:
    """The checked-out commit, from the files under `.git`; None outside a checkout."""
    try:
        git_dir = _git_dir(base)
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text().strip()
        sha = _resolve_ref(git_dir, head.removeprefix("ref:").strip()) if head.startswith("ref:") else head
    except OSError:
        return None
    return sha if sha and _SHA.match(sha) else None


def commit_time(sha: str, base: Path = BASE_DIR) -> str | None:
    """The committer time of a loose commit object (ISO 8601, UTC); None when packed or unreadable."""
    try:
        git_dir = _git_dir(base)
        if git_dir is None:
            return None
        raw = zlib.decompress((_common_dir(git_dir) / "objects" / sha[:2] / sha[2:]).read_bytes())
    except (OSError, zlib.error):
        return None
    for line in raw.split(b"\x00", 1)[-1].decode(errors="replace").splitlines():
        if line.startswith("committer "):
            try:
                stamp = int(line.rsplit(" ", 2)[-2])
            except (ValueError, IndexError):
                return None
            return datetime.fromtimestamp(stamp, tz=UTC).isoformat()
        if not line:
            break
    return None


@cache
def _checkout() -> tuple[str | None, str | None]:
    # Read once per process: a running process reports the code it started with, even after a
    # `git checkout` on disk (gunicorn's reload starts new workers, which read it again).
    commit = git_commit()
    return commit, commit_time(commit) if commit else None


def build_info() -> dict[str, str | None]:
    """`{"version", "commit", "builtAt"}`: `BUILD_COMMIT`/`BUILT_AT` win over what git says."""
    env_commit = os.environ.get("BUILD_COMMIT", "").strip()
    git_sha, git_time = _checkout()
    commit = env_commit or git_sha
    built_at = os.environ.get("BUILT_AT", "").strip() or None
    if built_at is None and commit == git_sha:
        built_at = git_time
    return {"version": version(), "commit": commit, "builtAt": built_at}
