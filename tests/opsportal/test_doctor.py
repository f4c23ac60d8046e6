"""`manage.py doctor`: each check on a healthy set-up and on a deliberately broken one."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import Schedule

from core import procs
from dispatch.scheduler import beat, ensure_schedules
from health.models import MaintenanceWindow, Service
from notify.models import Channel
from opsportal import doctor
from recovery.models import RecoveryAction
from tests.factories import RecoveryActionFactory, ServiceFactory, TunnelFactory
from tests.servers import free_port
from tests.tiers import worker_redis_url
from tunnels.models import Tunnel

BASE_DIR = Path(__file__).resolve().parents[2]
GOOD_KEY = secrets.token_urlsafe(50)
MANIFEST = "whitenoise.storage.CompressedManifestStaticFilesStorage"


def redis_reachable(url: str = worker_redis_url()) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def run_doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process, against the database and broker the env names."""
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "SECRET_KEY": GOOD_KEY,
        "DEBUG": "false",
        "OPSPORTAL_VAR_DIR": str(tmp_path),
        "LOG_DIR": str(tmp_path / "logs"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "STATIC_MANIFEST": "false",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "doctor", "--no-color"],
        cwd=BASE_DIR,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def healthy(db, settings, tmp_path: Path) -> None:
    """Everything doctor wants: migrated database (the test DB), schedules, a fresh heartbeat, a strong key."""
    settings.SECRET_KEY = GOOD_KEY
    settings.DEBUG = False
    settings.LOG_DIR = tmp_path / "logs"
    ensure_schedules()
    beat()


# --- all checks together ------------------------------------------------------------------


def test_it_reports_green_on_a_healthy_setup(healthy, capsys) -> None:
    findings = doctor.run_checks()
    assert [f.check for f in findings if not f.ok] == []
    assert {f.check for f in findings} == {name for name, _, _ in doctor.CHECKS}
    summary = call_command("doctor", "--no-color")
    assert summary == f"doctor: all {len(doctor.CHECKS)} checks passed"
    assert "FAIL" not in capsys.readouterr().out


def test_it_exits_non_zero_and_says_how_to_fix_each_problem(healthy, settings, capsys) -> None:
    settings.DEBUG = True
    settings.SECRET_KEY = "short"
    with pytest.raises(CommandError, match=r"doctor: 2 problem\(s\): secret_key, debug"):
        call_command("doctor", "--no-color")
    out = capsys.readouterr().out
    assert "FAIL  debug" in out and "fix: set DEBUG=false" in out
    assert "FAIL  secret_key" in out and "fix: generate one" in out
    assert "ok    database" in out


def test_it_turns_a_crashing_check_into_a_problem() -> None:
    def broken() -> doctor.Finding:
        raise RuntimeError("boom")

    (finding,) = doctor.run_checks([("boom", broken, False)])
    assert not finding.ok
    assert "RuntimeError: boom" in finding.detail


# --- database -----------------------------------------------------------------------------


def test_it_passes_the_database_when_reachable_and_migrated(db) -> None:
    finding = doctor.check_database()
    assert finding.ok, finding
    assert "all migrations applied" in finding.detail


@pytest.mark.system
def test_it_reports_an_unmigrated_database_and_skips_what_needs_it(tmp_path: Path) -> None:
    proc = run_doctor(tmp_path)
    assert proc.returncode == 1
    assert "migration(s) not applied" in proc.stdout
    assert "fix: run `python manage.py migrate`" in proc.stdout
    assert "skip  schedules   skipped: the database is not migrated" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "CommandError: doctor:" in proc.stderr


@pytest.mark.system
def test_it_reports_an_unreachable_database_without_leaking_its_password(tmp_path: Path) -> None:
    password = "hunter2-" + secrets.token_hex(8)
    proc = run_doctor(tmp_path, DATABASE_URL=f"postgres://opsportal:{password}@127.0.0.1:{free_port()}/opsportal")
    assert proc.returncode == 1
    assert "FAIL  database    cannot reach the postgresql database 'opsportal'" in proc.stdout
    assert "check DATABASE_URL" in proc.stdout
    for name in ("scheduler", "schedules", "clock"):
        assert f"skip  {name:<10}  skipped: the database is unreachable" in proc.stdout
    assert password not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


# --- cache and broker ---------------------------------------------------------------------


def test_it_passes_the_database_cache(db) -> None:
    finding = doctor.check_cache()
    assert finding.ok, finding
    assert "DatabaseCache" in finding.detail


def test_it_rejects_a_per_process_cache(db, settings) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    finding = doctor.check_cache()
    assert not finding.ok
    assert "LocMemCache" in finding.detail and "each process sees its own" in finding.detail
    assert "REDIS_URL" in finding.fix


def test_it_reports_a_missing_cache_table(db, settings) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "no_such_cache_table"}
    }
    finding = doctor.check_cache()
    assert not finding.ok
    assert finding.fix == "run `python manage.py createcachetable`"


def test_it_passes_the_orm_broker_when_its_table_exists(db) -> None:
    finding = doctor.check_broker()
    assert finding.ok, finding
    assert "ORM" in finding.detail


@pytest.mark.system
def test_it_reports_an_unreachable_redis_for_cache_and_broker(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=BASE_DIR,
        env={**os.environ, "SECRET_KEY": GOOD_KEY, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
        check=True,
        timeout=120,
    )
    proc = run_doctor(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/9")
    assert proc.returncode == 1
    assert "FAIL  cache" in proc.stdout and "check REDIS_URL and that redis-server runs" in proc.stdout
    assert "FAIL  broker      Django-Q2 broker unreachable" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.system
@pytest.mark.skipif(not redis_reachable(), reason="needs Redis on 127.0.0.1:6379 (CI starts one)")
def test_it_passes_a_reachable_redis_for_cache_and_broker(tmp_path: Path) -> None:
    proc = run_doctor(tmp_path, REDIS_URL=worker_redis_url())
    assert "ok    cache       shared cache works (default: RedisCache)" in proc.stdout
    assert "ok    broker      Django-Q2 broker reachable (Redis)" in proc.stdout


# --- scheduler, schedules, clock -----------------------------------------------------------


def test_it_reports_a_qcluster_that_never_ran(db) -> None:
    finding = doctor.check_scheduler()
    assert not finding.ok
    assert "no qcluster heartbeat" in finding.detail
    assert "systemctl start opsportal-qcluster@1" in finding.fix


def test_it_reports_a_late_heartbeat_and_passes_a_fresh_one(db) -> None:
    beat(timezone.now() - timedelta(minutes=10))
    late = doctor.check_scheduler()
    assert not late.ok and "heartbeat is late" in late.detail
    beat()
    assert doctor.check_scheduler().ok


def test_it_names_the_dispatcher_loops_alive(db) -> None:
    beat(timezone.now() - timedelta(minutes=5), owner="resident@worker-3:303:cccc")  # dead: not counted
    beat(owner="resident@worker-1:101:aaaa")
    beat(owner="resident@worker-2:202:bbbb")
    finding = doctor.check_scheduler()
    assert finding.ok
    assert finding.detail.endswith("2 dispatcher loop(s) alive: resident@worker-1:101, resident@worker-2:202")


def test_it_reports_missing_schedules(db) -> None:
    ensure_schedules()
    assert doctor.check_schedules().ok
    Schedule.objects.filter(name="opsportal-dispatch").delete()
    finding = doctor.check_schedules()
    assert not finding.ok
    assert "opsportal-dispatch" in finding.detail
    assert "migrate" in finding.fix


def test_it_passes_clocks_that_agree(db) -> None:
    beat()
    finding = doctor.check_clock()
    assert finding.ok, finding


def test_it_reports_a_web_clock_off_the_database_clock(db) -> None:
    # time-machine moves this process's clock only; the database reads its own.
    with time_machine.travel(timezone.now() + timedelta(seconds=60), tick=True):
        finding = doctor.check_clock()
    assert not finding.ok
    assert "this host's clock is +60" in finding.detail
    assert "ntp" in finding.fix.lower()


def test_it_reports_a_worker_clock_ahead_of_the_database(db) -> None:
    beat(timezone.now() + timedelta(seconds=30))  # a heartbeat written by a worker whose clock runs fast
    finding = doctor.check_clock()
    assert not finding.ok
    assert "in the database's future" in finding.detail


# --- host, secrets, static ------------------------------------------------------------------


def test_it_passes_a_writable_log_directory(settings, tmp_path: Path) -> None:
    settings.LOG_DIR = tmp_path / "logs"
    settings.LOGGING = {"version": 1, "handlers": {}}
    finding = doctor.check_log_dir()
    assert finding.ok, finding
    assert (tmp_path / "logs").is_dir()


def test_it_reports_a_log_directory_that_cannot_be_written(settings, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")
    settings.LOG_DIR = blocker / "logs"
    finding = doctor.check_log_dir()
    assert not finding.ok
    assert str(blocker / "logs") in finding.detail
    assert "LOG_DIR" in finding.fix


def test_it_reports_a_file_handler_whose_directory_cannot_be_written(settings, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings.LOG_DIR = tmp_path
    settings.LOGGING = {"version": 1, "handlers": {"f": {"filename": str(blocker / "portal.log")}}}
    assert not doctor.check_log_dir().ok


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "empty"),
        ("short-but-random-Zq8", "weak: 20 characters"),
        ("a" * 60, "1 distinct"),
        ("django-insecure-" + secrets.token_urlsafe(40), "placeholder"),
        ("change-me-" + secrets.token_urlsafe(50), "placeholder"),
    ],
    ids=["empty", "short", "one-character", "django-insecure", "change-me"],  # keys are random: stable ids for xdist
)
def test_it_reports_a_weak_or_default_secret_key(settings, key: str, why: str) -> None:
    settings.SECRET_KEY = key
    finding = doctor.check_secret_key()
    assert not finding.ok
    assert why in finding.detail
    assert "token_urlsafe" in finding.fix
    if len(key) > 3:
        assert key not in finding.detail


def test_it_passes_a_strong_secret_key(settings) -> None:
    settings.SECRET_KEY = GOOD_KEY
    finding = doctor.check_secret_key()
    assert finding.ok
    assert GOOD_KEY not in finding.detail


def test_it_reports_debug_on(settings) -> None:
    settings.DEBUG = True
    assert not doctor.check_debug().ok
    settings.DEBUG = False
    assert doctor.check_debug().ok


def test_it_reports_static_files_not_collected_and_passes_after_collectstatic(settings, tmp_path: Path) -> None:
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST}}
    missing = doctor.check_static()
    assert not missing.ok
    assert "collectstatic" in missing.fix
    call_command("collectstatic", interactive=False, verbosity=0)
    assert doctor.check_static().ok


def test_it_needs_no_manifest_for_plain_static_files() -> None:
    assert doctor.check_static().ok


# --- file modes -----------------------------------------------------------------------------


def test_it_names_a_file_or_directory_other_users_can_read_and_the_fix(settings, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path / "var"
    settings.LOG_DIR = tmp_path / "logs"
    settings.LOGGING = {"version": 1, "handlers": {}}
    for directory in (settings.VAR_DIR, settings.LOG_DIR):
        directory.mkdir(mode=0o700)
    database = settings.VAR_DIR / "opsportal.sqlite3"
    database.write_bytes(b"")
    database.chmod(0o600)
    assert doctor.check_file_modes().ok
    # Loosened after start, as a backup copy or an operator's chmod would.
    database.chmod(0o644)
    settings.LOG_DIR.chmod(0o755)
    finding = doctor.check_file_modes()
    assert not finding.ok
    assert f"{database} is 0644" in finding.detail
    assert f"{settings.LOG_DIR} is 0755" in finding.detail
    assert f"chmod 600 {database}" in finding.fix
    assert f"chmod 700 {settings.LOG_DIR}" in finding.fix


def test_it_reports_loose_modes_in_the_command_output(healthy, settings, tmp_path: Path, capsys) -> None:
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    settings.VAR_DIR.chmod(0o755)  # chmod: this process's umask is owner-only
    with pytest.raises(CommandError, match=r"files"):
        call_command("doctor", "--no-color")
    out = capsys.readouterr().out
    assert f"FAIL  files       {settings.VAR_DIR} is 0755" in out
    assert f"fix: chmod 700 {settings.VAR_DIR}" in out


# --- variables the configuration names (issue 15 item 13) ------------------------------------


def test_it_names_each_unset_variable_the_configuration_uses_and_the_fix(healthy, monkeypatch, capsys) -> None:
    from notify.models import Channel
    from tests.factories import RecoveryActionFactory, ServiceFactory

    for name in ("DOCTOR_UNSET_DSN", "DOCTOR_UNSET_KEY", "DOCTOR_UNSET_HOOK", "DOCTOR_UNSET_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCTOR_SET_DSN", "postgresql://u@127.0.0.1/db")
    assert doctor.check_variables().ok
    ServiceFactory(name="pg", kind="postgres", settings={"dsn_env": "DOCTOR_UNSET_DSN"})
    ServiceFactory(name="pg2", kind="postgres", settings={"dsn_env": "DOCTOR_SET_DSN"})
    web = ServiceFactory(
        name="web", kind="http", settings={"url": "http://127.0.0.1:9/", "headers": {"X-Key": "${DOCTOR_UNSET_KEY}"}}
    )
    RecoveryActionFactory(service=web, kind="http", settings={"url": "http://127.0.0.1:9/${DOCTOR_UNSET_HOOK}"})
    Channel.objects.create(name="ops", url="json://127.0.0.1:9/${DOCTOR_UNSET_TOKEN}")
    finding = doctor.check_variables()
    assert not finding.ok
    assert "service pg: dsn_env names DOCTOR_UNSET_DSN" in finding.detail
    assert "service web: headers.X-Key uses DOCTOR_UNSET_KEY" in finding.detail
    assert "service web recovery[0]: url uses DOCTOR_UNSET_HOOK" in finding.detail
    assert "channel ops: url uses DOCTOR_UNSET_TOKEN" in finding.detail
    assert "DOCTOR_SET_DSN" not in finding.detail
    assert "set DOCTOR_UNSET_DSN in the environment or .env" in finding.fix
    assert "set DOCTOR_UNSET_KEY in the environment or .env" in finding.fix
    with pytest.raises(CommandError, match=r"variables"):
        call_command("doctor", "--no-color")
    assert "FAIL  variables" in capsys.readouterr().out


# --- the supervisor of commands (GNU coreutils timeout) --------------------------------------------


@pytest.fixture
def fresh_supervisor():
    """The supervisor lookup is cached per process: redone for the test and again after it."""
    procs.supervisor.cache_clear()
    yield
    procs.supervisor.cache_clear()


def test_it_passes_the_gnu_timeout_supervisor(fresh_supervisor) -> None:
    real = shutil.which("timeout")
    if real is None or b"GNU coreutils" not in subprocess.run([real, "--version"], capture_output=True).stdout:
        pytest.skip("needs GNU coreutils `timeout`")
    finding = doctor.check_supervisor()
    assert finding.ok and real in finding.detail


def test_it_reports_commands_running_unsupervised_under_a_busybox_timeout(
    fresh_supervisor, tmp_path: Path, monkeypatch
) -> None:
    fake = tmp_path / "bin" / "timeout"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'BusyBox v1.36.1 multi-call binary.' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    finding = doctor.check_supervisor()
    assert not finding.ok
    assert f"{fake} is not GNU coreutils timeout" in finding.detail and "unsupervised" in finding.detail
    assert "coreutils" in finding.fix and "restart" in finding.fix


# --- values stored before the bounds ------------------------------------------------------------------


def test_it_names_each_stored_value_out_of_its_bounds_and_the_fix(healthy, capsys) -> None:
    web = ServiceFactory(name="web", kind="http", settings={"url": "http://127.0.0.1:9/"})
    RecoveryActionFactory(service=web)
    RecoveryActionFactory(service=web, kind="restart_process", settings={"argv": ["true"]})
    tunnel = TunnelFactory(name="edge")
    Channel.objects.create(name="ops", url="json://127.0.0.1:9/hook")
    MaintenanceWindow.objects.create(name="nightly", cron="0 2 * * *", duration=60)
    assert doctor.check_bounds().ok

    # Rows as they were stored before the bounds (an .update() runs no validator).
    Service.objects.filter(pk=web.pk).update(
        interval=10**6, settings={"url": "http://127.0.0.1:9/", "expect_status": [99]}
    )
    first, second = RecoveryAction.objects.filter(service=web).order_by("position")
    RecoveryAction.objects.filter(pk=first.pk).update(cooldown=10**6)
    RecoveryAction.objects.filter(pk=second.pk).update(settings={"argv": ["true"], "max_matches": 0})
    Tunnel.objects.filter(pk=tunnel.pk).update(settle_seconds=1e9, startup_timeout=float("inf"))
    Channel.objects.filter(name="ops").update(remind_every=10**9)
    MaintenanceWindow.objects.filter(name="nightly").update(duration=10**9)

    finding = doctor.check_bounds()
    assert not finding.ok
    for named in (
        "service web: interval: must be at most 86400",
        "service web: settings.expect_status: must be at least 100",
        "service web recovery[0]: cooldown: must be at most 86400",
        "service web recovery[1]: settings.max_matches: must be a positive integer",
        "tunnel edge: settle_seconds: must be at most 300",
        "tunnel edge: startup_timeout: must be a finite number",
        "channel ops: remind_every: must be at most 2592000",
        "maintenance window nightly: duration: must be at most 10080",
    ):
        assert named in finding.detail, (named, finding.detail)
    assert finding.detail.count("nightly: duration") == 1  # the validator's word; the model's clean says it again
    assert "edit it in the admin or re-import the file" in finding.fix
    with pytest.raises(CommandError, match=r"bounds"):
        call_command("doctor", "--no-color")
    assert "FAIL  bounds" in capsys.readouterr().out
