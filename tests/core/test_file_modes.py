"""The portal's files are owner-only (0700 dirs, 0600 files) whatever the umask it is started with.

Real processes under umask 022 (the usual login umask, which made var/ 0755 and the database 0644),
a fresh OPSPORTAL_VAR_DIR and LOG_DIR each; and, run as root, a real second local user (`nobody`).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import files
from core.logconfig import build_logging
from opsportal import doctor

BASE_DIR = Path(__file__).resolve().parents[2]
LOOSE_UMASK = 0o022

# In a fresh process: what the web, qcluster and watchdog write besides the database. The spool and the
# tunnel ledger through their own code, log lines through the configured LOGGING.
WRITE_STATE = """
import logging, django
django.setup()
from django.utils import timezone
from core.spool import Spool
from tunnels.models import Tunnel
from tunnels.watchdog import host_claim
Spool().append("probe_result", {"x": 1})
with host_claim(Tunnel(name="main", created_at=timezone.now())):
    pass
logging.getLogger("opsportal.health").warning("probe round written to system-monitor.log")
logging.getLogger("opsportal.tunnels").warning("tunnel check written to tunnel-monitor.log")
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh directory that other users can enter (tmp_path's parents are 0700: `nobody` would be
    stopped there, whatever the portal's own modes)."""
    path = Path(tempfile.mkdtemp(prefix="opsportal-modes-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def portal_env(home: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "DEBUG": "true",  # the embedded default: SECRET_KEY generated into the var dir
        "SECRET_KEY": "",
        "OPSPORTAL_VAR_DIR": str(home / "var"),
        "LOG_DIR": str(home / "logs"),
        "DATABASE_URL": f"sqlite:///{home / 'var' / 'opsportal.sqlite3'}",
        "REDIS_URL": "",
        "STATIC_MANIFEST": "false",
        **extra,
    }


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, cwd=BASE_DIR, env=env, umask=LOOSE_UMASK, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def migrate_and_write_state(home: Path) -> None:
    env = portal_env(home)
    run([sys.executable, "manage.py", "migrate", "-v0"], env)
    run([sys.executable, "-c", WRITE_STATE], {**env, "DJANGO_SETTINGS_MODULE": "opsportal.settings"})


def portal_paths(home: Path) -> list[Path]:
    return sorted(p for top in (home / "var", home / "logs") for p in [top, *top.rglob("*")])


@pytest.mark.system
def test_it_creates_var_dir_database_spool_tunnel_state_and_logs_owner_only(home: Path) -> None:
    migrate_and_write_state(home)
    var, logs = home / "var", home / "logs"
    expected = [
        var / "opsportal.sqlite3",
        var / "secret_key",
        logs / "system-monitor.log",
        logs / "tunnel-monitor.log",
    ]
    for path in expected:
        assert path.is_file(), f"{path} was not written"
    assert any((var / "spool").iterdir()), "the spool wrote nothing"
    assert any((var / "tunnels").iterdir()), "the tunnel ledger wrote nothing"
    loose = {str(p.relative_to(home)): oct(mode(p)) for p in portal_paths(home) if mode(p) & 0o077}
    assert loose == {}
    dirs = [p for p in portal_paths(home) if p.is_dir()]
    assert {var, logs, var / "spool", var / "tunnels"} <= set(dirs)
    assert {mode(d) for d in dirs} == {0o700}
    assert {mode(f) for f in portal_paths(home) if f.is_file()} == {0o600}


@pytest.mark.system
def test_it_tightens_what_an_earlier_run_left_loose_at_start(home: Path) -> None:
    (home / "var" / "spool").mkdir(parents=True)
    (home / "logs").mkdir()
    for directory in (home / "var", home / "var" / "spool", home / "logs"):
        directory.chmod(0o755)
    loose = [
        home / "var" / "opsportal.sqlite3",
        home / "var" / "opsportal.sqlite3-wal",
        home / "var" / "opsportal.sqlite3-shm",
        home / "var" / "spool" / "spool.jsonl",
        home / "logs" / "system-monitor.log",
        home / "logs" / "system-monitor.log.2026-11-30",
    ]
    for path in loose:
        path.write_bytes(b"")
        path.chmod(0o644)
    run([sys.executable, "manage.py", "check"], portal_env(home))
    assert {str(p.relative_to(home)): oct(mode(p)) for p in portal_paths(home) if mode(p) & 0o077} == {}


@pytest.mark.system
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a command as a second local user (runuser)")
def test_it_keeps_another_local_user_out_of_the_database_and_logs(home: Path) -> None:
    if shutil.which("runuser") is None:
        pytest.skip("runuser (util-linux) is not installed")
    # The control: `nobody` can read a world-readable file here, so a refusal below is the portal's modes.
    control = home / "control.txt"
    control.write_text("readable")
    control.chmod(0o644)
    ok = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(control)], capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    migrate_and_write_state(home)
    for path in (home / "var" / "opsportal.sqlite3", home / "var" / "secret_key", home / "logs" / "system-monitor.log"):
        proc = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(path)], capture_output=True, timeout=30)
        assert proc.returncode != 0, f"nobody read {path}: {proc.stdout[:60]!r}"
        assert b"Permission denied" in proc.stderr
    listing = subprocess.run(
        ["runuser", "-u", "nobody", "--", "ls", str(home / "var")], capture_output=True, text=True, timeout=30
    )
    assert listing.returncode != 0 and "Permission denied" in listing.stderr


@pytest.mark.system
def test_it_leaves_collectstatic_output_public(home: Path) -> None:
    # Static files are public by nature and nginx (another user) may serve them: collectstatic keeps the umask.
    # Even in the var dir (a deploy may put it there): the start-up tightening leaves STATIC_ROOT alone.
    static_root = home / "var" / "static"
    env = portal_env(home, STATIC_ROOT=str(static_root))
    run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], env)
    run([sys.executable, "manage.py", "check"], env)
    collected = [p for p in static_root.rglob("*") if p.is_file()]
    assert collected
    assert {mode(p) for p in collected} == {0o644}
    assert mode(home / "var") == 0o700  # the var dir is still the portal's own


def test_it_remembers_the_umask_it_started_with_for_service_processes() -> None:
    # Services the portal restarts keep the umask the operator gave the portal (a socket nginx must reach).
    script = "import os, sys; os.umask(0o027); from core import files; files.owner_only_umask([]); "
    script += "print(oct(files.child_umask()), oct(files.current_umask()))"
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, capture_output=True, text=True, timeout=30, check=True
    )
    assert proc.stdout.split() == ["0o27", "0o77"]
    assert files.current_umask() & 0o077 == 0o077  # this test process too: settings set it


RUN_CHILD = """
import sys, time, django
django.setup()
from pathlib import Path
from core import procs
print(procs.run_argv(["sh", "-c", "umask"], timeout=30).stdout.decode().strip())
out = Path(sys.argv[1])
procs.start_detached(["sh", "-c", 'umask > "$0"', str(out)])
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not (out.exists() and out.read_text().strip()):
    time.sleep(0.05)
print(out.read_text().strip())
"""


@pytest.mark.system
def test_it_starts_service_processes_with_the_umask_the_portal_was_given(home: Path) -> None:
    # Both ways the portal starts a process: run_argv (probes, command actions) and start_detached (restarts).
    env = {**portal_env(home), "DJANGO_SETTINGS_MODULE": "opsportal.settings"}
    proc = run([sys.executable, "-c", RUN_CHILD, str(home / "detached-umask")], env)
    assert proc.stdout.split() == ["0022", "0022"]


FOREIGN_UID = 65534  # nobody


@pytest.mark.system
def test_it_tightens_only_the_portal_s_own_files_and_leaves_what_else_shares_the_log_dir(home: Path) -> None:
    # LOG_DIR=/var/log: every start (any manage.py command, as root) must leave other services' logs alone.
    var, logs = home / "var", home / "logs"
    (var / "spool").mkdir(parents=True)
    (var / "tunnels").mkdir()
    (logs / "nginx").mkdir(parents=True)
    ours = [
        var / "opsportal.sqlite3",
        var / "spool" / "spool.jsonl",
        var / "tunnels" / "main.json",
        logs / "system-monitor.log",
        logs / "system-monitor.log.2026-11-30",
        logs / "tunnel-monitor.log",
        logs / "tunnel-main.log",
    ]
    theirs = [logs / "syslog", logs / "other-service.log", logs / "nginx" / "access.log", var / "operator-notes.txt"]
    if os.geteuid() == 0:  # a portal file name, but another user's file: not the portal's to change
        theirs.append(logs / "system-monitor.log.2026-11-29")
    for path in ours + theirs:
        path.write_bytes(b"")
        path.chmod(0o644)
    for directory in (var, var / "spool", var / "tunnels", logs, logs / "nginx"):
        directory.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(logs / "system-monitor.log.2026-11-29", FOREIGN_UID, FOREIGN_UID)
    run([sys.executable, "manage.py", "check"], portal_env(home))
    assert {str(p.relative_to(home)): oct(mode(p)) for p in ours if mode(p) != 0o600} == {}
    assert {str(p.relative_to(home)): oct(mode(p)) for p in theirs if mode(p) != 0o644} == {}
    assert mode(logs / "nginx") == 0o755
    assert mode(logs) == 0o755  # shared with other services: they must still reach their own logs
    assert {mode(d) for d in (var, var / "spool", var / "tunnels")} == {0o700}


DOCTOR_FILES = """
import django
django.setup()
from opsportal import doctor
finding = doctor.check_file_modes()
print(finding.ok, finding.detail, finding.fix)
"""


@pytest.mark.system
def test_doctor_reports_the_same_files_the_start_tightens(home: Path) -> None:
    logs = home / "logs"
    logs.mkdir()
    (logs / "other-service.log").write_bytes(b"")
    (logs / "other-service.log").chmod(0o644)
    env = {**portal_env(home), "DJANGO_SETTINGS_MODULE": "opsportal.settings"}
    out = run([sys.executable, "-c", DOCTOR_FILES], env).stdout
    assert out.startswith("True"), out
    assert "other-service.log" not in out
    assert mode(logs / "other-service.log") == 0o644


def test_it_counts_every_log_file_build_logging_writes_as_the_portal_s(tmp_path: Path) -> None:
    # files.py names the log files logconfig.py writes: a handler added there must be tightened too.
    (tmp_path / "var").mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    names = [Path(h["filename"]).name for h in build_logging(logs)["handlers"].values() if h.get("filename")]
    assert names
    made = [logs / n for n in names] + [logs / f"{n}.2026-11-30" for n in names] + [logs / "tunnel-main.log"]
    for path in made:
        path.write_bytes(b"")
    assert set(made) <= set(files.portal_paths(tmp_path / "var", logs))
    (logs / "unrelated.log").write_bytes(b"")
    assert logs / "unrelated.log" not in files.portal_paths(tmp_path / "var", logs)


def test_doctor_s_fix_names_only_the_portal_s_paths_never_a_recursive_chmod(settings, tmp_path: Path) -> None:
    settings.VAR_DIR, settings.LOG_DIR = tmp_path / "var", tmp_path / "logs"
    settings.VAR_DIR.mkdir(mode=0o700)
    settings.LOG_DIR.mkdir(mode=0o755)
    (settings.LOG_DIR / "syslog").write_bytes(b"")  # another service's: LOG_DIR is shared
    loose = [settings.LOG_DIR / f"system-monitor.log.2026-11-2{day}" for day in range(7)]
    for path in [settings.LOG_DIR / "syslog", *loose]:
        path.write_bytes(b"")
        path.chmod(0o644)
    finding = doctor.check_file_modes()
    assert not finding.ok
    assert "-R" not in finding.fix and "syslog" not in finding.fix + finding.detail
    assert "chmod go-rwx " in finding.fix
    assert all(str(path) in finding.fix for path in loose)  # the 5 shown and the 2 more, by name
