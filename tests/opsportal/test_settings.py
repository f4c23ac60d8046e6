"""Settings read from the environment: typed, and loud (naming the variable) on a bad value.

Each case loads `opsportal.settings` in a fresh interpreter with a crafted environment. Every
variable a case depends on is set explicitly (an empty value means "unset"), so a `.env` file
beside manage.py, which only fills in what the environment lacks, cannot change the outcome.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings

BASE_DIR = Path(django_settings.BASE_DIR)
QUIET = {"SECRET_KEY": "k" * 50, "DEBUG": "false", "DATABASE_URL": "", "REDIS_URL": "", "ALLOWED_HOSTS": ""}


def load(tmp_path: Path, expr: str, **env: str) -> subprocess.CompletedProcess:
    code = f"import json\nfrom django.conf import settings as s\nprint(json.dumps({expr}, default=str))"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "PYTHONPATH": str(BASE_DIR),
            "DJANGO_SETTINGS_MODULE": "opsportal.settings",
            "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
            **QUIET,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def value(tmp_path: Path, expr: str, **env: str):
    done = load(tmp_path, expr, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.system
def test_it_refuses_to_start_without_secret_key_when_debug_is_off(tmp_path):
    done = load(tmp_path, "s.SECRET_KEY", SECRET_KEY="", DEBUG="false")
    assert done.returncode != 0
    assert "SECRET_KEY: must be set when DEBUG is off" in done.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


@pytest.mark.system
def test_it_generates_and_keeps_a_development_key_when_debug_is_on(tmp_path):
    first = value(tmp_path, "s.SECRET_KEY", SECRET_KEY="", DEBUG="true")
    second = value(tmp_path, "s.SECRET_KEY", SECRET_KEY="", DEBUG="true")
    assert first == second
    assert len(first) >= 50
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.read_text().strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.system
def test_it_uses_the_given_secret_key(tmp_path):
    assert value(tmp_path, "s.SECRET_KEY", SECRET_KEY="given-" + "x" * 40) == "given-" + "x" * 40


@pytest.mark.system
@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("DEBUG", "maybe", "DEBUG: must be a boolean (true/false), got 'maybe'"),
        ("AUTO_RECOVERY_ENABLED", "sometimes", "AUTO_RECOVERY_ENABLED: must be a boolean"),
        ("PROBE_CONCURRENCY", "many", "PROBE_CONCURRENCY: must be an integer >= 1, got 'many'"),
        ("PROBE_CONCURRENCY", "0", "PROBE_CONCURRENCY: must be an integer >= 1, got '0'"),
        ("DB_STATEMENT_TIMEOUT_MS", "30s", "DB_STATEMENT_TIMEOUT_MS: must be an integer >= 0"),
        ("PROBE_MAX_BODY_BYTES", "10", "PROBE_MAX_BODY_BYTES: must be an integer >= 1024"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"),
        ("DATABASE_URL", "mysql://app:hunter2@db/app", "DATABASE_URL: must be a database URL"),
        ("DATABASE_URL", "just-a-name", "DATABASE_URL: must be a database URL"),
    ],
)
def test_it_fails_loudly_naming_the_variable(tmp_path, name, raw, message):
    done = load(tmp_path, "s.DEBUG", **{name: raw})
    assert done.returncode != 0
    assert message in done.stderr
    assert "hunter2" not in done.stderr  # a database URL's password is not echoed


@pytest.mark.system
def test_it_reads_booleans_lists_and_numbers(tmp_path):
    got = value(
        tmp_path,
        "[s.DEBUG, s.AUTO_RECOVERY_ENABLED, s.ALLOWED_HOSTS, s.PROBE_CONCURRENCY, s.CSRF_TRUSTED_ORIGINS]",
        DEBUG="yes",
        AUTO_RECOVERY_ENABLED="off",
        ALLOWED_HOSTS="ops.example.org, portal.internal ,",
        PROBE_CONCURRENCY="8",
        CSRF_TRUSTED_ORIGINS="https://ops.example.org",
    )
    assert got == [True, False, ["ops.example.org", "portal.internal"], 8, ["https://ops.example.org"]]


@pytest.mark.system
def test_it_has_safe_defaults(tmp_path):
    got = value(tmp_path, "[s.DEBUG, s.AUTO_RECOVERY_ENABLED, s.ALLOWED_HOSTS, s.CACHES['default']['BACKEND']]")
    assert got == [False, True, ["localhost", "127.0.0.1", "[::1]"], "django.core.cache.backends.db.DatabaseCache"]


@pytest.mark.system
def test_it_defaults_to_sqlite_with_wal_busy_timeout_and_immediate_transactions(tmp_path):
    db = value(tmp_path, "s.DATABASES['default']", SQLITE_BUSY_TIMEOUT_MS="7000")
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(tmp_path / "var" / "opsportal.sqlite3")
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert db["OPTIONS"]["timeout"] == 7.0
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]


@pytest.mark.system
def test_it_configures_postgres_from_database_url(tmp_path):
    db = value(
        tmp_path,
        "s.DATABASES['default']",
        DATABASE_URL="postgres://ops:pw@db.internal:6432/opsportal",
        DB_STATEMENT_TIMEOUT_MS="15000",
        TEST_DATABASE_NAME="test_h2_settings",
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"]) == ("db.internal", 6432, "opsportal", "ops")
    assert db["OPTIONS"]["options"] == "-c statement_timeout=15000"
    assert db["TEST"]["NAME"] == "test_h2_settings"


@pytest.mark.system
def test_it_uses_redis_for_the_cache_when_redis_url_is_set(tmp_path):
    backend = value(tmp_path, "s.CACHES['default']['BACKEND']", REDIS_URL="redis://127.0.0.1:6379/3")
    assert backend == "django.core.cache.backends.redis.RedisCache"


@pytest.mark.system
def test_it_counts_the_ping_rate_limit_in_redis_or_in_memory_never_in_the_database(tmp_path):
    pings = "s.CACHES['pings']['BACKEND']"
    assert value(tmp_path, pings) == "django.core.cache.backends.locmem.LocMemCache"
    assert value(tmp_path, pings, REDIS_URL="redis://127.0.0.1:6379/3") == "django.core.cache.backends.redis.RedisCache"


@pytest.mark.system
def test_it_throttles_logins_by_default_per_user_and_address(tmp_path):
    expr = (
        "[s.AXES_ENABLED, s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(), s.AXES_LOCKOUT_PARAMETERS,"
        " s.AXES_HTTP_RESPONSE_CODE, s.AUTHENTICATION_BACKENDS[0], 'axes.middleware.AxesMiddleware' in s.MIDDLEWARE,"
        " s.LOGIN_PROXY_COUNT]"
    )
    got = value(tmp_path, expr)
    assert got == [True, 10, 900.0, [["username", "ip_address"]], 429, "axes.backends.AxesStandaloneBackend", True, 0]
    got = value(tmp_path, expr, LOGIN_FAILURE_LIMIT="5", LOGIN_LOCKOUT_MINUTES="60", LOGIN_PROXY_COUNT="1")
    assert got[1:3] == [5, 3600.0] and got[-1] == 1
    done = load(tmp_path, "s.DEBUG", LOGIN_FAILURE_LIMIT="0")
    assert "LOGIN_FAILURE_LIMIT: must be an integer >= 1, got '0'" in done.stderr


@pytest.mark.system
def test_it_sends_a_strict_content_security_policy(tmp_path):
    got = value(tmp_path, "[s.CONTENT_SECURITY_POLICY['DIRECTIVES'], 'csp.middleware.CSPMiddleware' in s.MIDDLEWARE]")
    directives, installed = got
    assert installed
    assert directives["default-src"] == ["'self'"] and directives["script-src"] == ["'self'"]
    assert not any("unsafe" in source for sources in directives.values() for source in sources)
