"""Build info read from a real git checkout's files (no subprocess in the code under test)."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from core import version


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_COMMITTER_DATE": "2026-01-02T03:04:05+02:00",
        "PATH": "/usr/bin:/bin",
        "HOME": str(repo),
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "f.txt").write_text("x")
    git(tmp_path, "add", "f.txt")
    git(tmp_path, "commit", "-q", "-m", "one")
    return tmp_path


def test_it_reads_the_commit_and_its_time_from_the_git_files(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    assert version.git_commit(repo) == sha
    assert datetime.fromisoformat(version.commit_time(sha, repo)) == datetime.fromisoformat("2026-01-02T01:04:05+00:00")


def test_it_follows_packed_refs_and_a_detached_head(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert version.git_commit(repo) == sha
    git(repo, "checkout", "-q", "--detach")
    assert version.git_commit(repo) == sha


def test_it_gives_no_time_for_a_packed_commit(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "gc", "-q", "--prune=now")
    assert version.git_commit(repo) == sha
    assert version.commit_time(sha, repo) is None


def test_it_reads_a_worktree(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("wt") / "wt"
    git(repo, "worktree", "add", "-q", "-b", "side", str(other))
    assert (other / ".git").is_file()
    assert version.git_commit(other) == git(repo, "rev-parse", "HEAD")


def test_it_has_no_commit_outside_a_checkout(tmp_path: Path) -> None:
    assert version.git_commit(tmp_path) is None


def test_it_prefers_the_build_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILD_COMMIT", "v1.2.0-abc123")
    monkeypatch.setenv("BUILT_AT", "2026-11-28T12:00:00+00:00")
    assert version.build_info() == {
        "version": version.version(),
        "commit": "v1.2.0-abc123",
        "builtAt": "2026-11-28T12:00:00+00:00",
    }


def test_it_reports_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUILD_COMMIT", raising=False)
    monkeypatch.delenv("BUILT_AT", raising=False)
    version._checkout.cache_clear()  # read once per process: others may have committed since
    info = version.build_info()
    assert info["version"] != "unknown"  # read from pyproject.toml
    assert info["commit"] == version.git_commit()
    assert set(info) == {"version", "commit", "builtAt"}
