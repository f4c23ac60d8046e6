"""Login throttling (django-axes): the login form and the admin login lock a user+address out after
LOGIN_FAILURE_LIMIT failures within LOGIN_LOCKOUT_MINUTES, with a clear 429 page; `axes_reset` and the
admin unlock; every failure and lockout lands in logs/system-monitor.log, never with the password.
And the shared cache's table exists after a plain `migrate` (the bearer-token limiter lives in it)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings

BASE_DIR = Path(settings.BASE_DIR)
PASSWORD = "right-horse-battery-9d2c"
LIMIT = 3
HERE = "127.0.0.1"
ELSEWHERE = "127.0.0.2"


@pytest.fixture
def ops(db):
    return get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)


@pytest.fixture(autouse=True)
def _small_limit():
    with override_settings(AXES_FAILURE_LIMIT=LIMIT):
        yield


def login(address: str, username: str, password: str, url: str = "/accounts/login/"):
    return Client(REMOTE_ADDR=address).post(url, {"username": username, "password": password})


def guess(address: str, username: str, times: int, url: str = "/accounts/login/") -> list[int]:
    return [login(address, username, f"wrong-guess-{k}", url).status_code for k in range(times)]


def test_it_locks_a_user_and_address_out_after_the_configured_failures(ops):
    codes = guess(HERE, "ops", LIMIT)
    # The form answers 200 (with its error) until the limit; the failure that reaches it is locked out.
    assert codes[: LIMIT - 1] == [200] * (LIMIT - 1)
    assert codes[-1] == 429
    # Now even the right password is refused from this address.
    locked = login(HERE, "ops", PASSWORD)
    assert locked.status_code == 429
    assert "_auth_user_id" not in locked.client.session


def test_it_shows_a_clear_lockout_message(ops):
    guess(HERE, "ops", LIMIT)
    response = login(HERE, "ops", PASSWORD)
    assert response.status_code == 429
    assert response["Retry-After"] == str(settings.LOGIN_LOCKOUT_MINUTES * 60)
    assert "registration/locked_out.html" in [t.name for t in response.templates]
    text = response.content.decode()
    assert "Too many failed login attempts" in text
    assert f"{settings.LOGIN_LOCKOUT_MINUTES} minutes" in text


def test_it_still_lets_the_good_user_in_from_another_address(ops):
    guess(HERE, "ops", LIMIT)
    response = login(ELSEWHERE, "ops", PASSWORD)
    assert response.status_code == 302
    assert response.url == settings.LOGIN_REDIRECT_URL


def test_it_ignores_a_forwarded_for_header_unless_told_a_proxy_stands_in_front(ops):
    # Without LOGIN_PROXY_COUNT a client cannot dodge the count by inventing X-Forwarded-For addresses.
    for k in range(LIMIT):
        Client(REMOTE_ADDR=HERE, HTTP_X_FORWARDED_FOR=f"127.0.9.{k}").post(
            "/accounts/login/", {"username": "ops", "password": "wrong"}
        )
    assert login(HERE, "ops", PASSWORD).status_code == 429


@override_settings(LOGIN_PROXY_COUNT=1)
def test_it_counts_by_the_address_the_proxy_forwards_when_configured(ops):
    behind_proxy = {"REMOTE_ADDR": HERE}
    for _ in range(LIMIT):
        Client(**behind_proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE).post(
            "/accounts/login/", {"username": "ops", "password": "wrong"}
        )
    locked = Client(**behind_proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE).post(
        "/accounts/login/", {"username": "ops", "password": PASSWORD}
    )
    assert locked.status_code == 429
    # The operator behind the same proxy, from their own address, still gets in.
    other = Client(**behind_proxy, HTTP_X_FORWARDED_FOR="127.0.0.3").post(
        "/accounts/login/", {"username": "ops", "password": PASSWORD}
    )
    assert other.status_code == 302


def test_it_locks_out_on_the_admin_login_too(ops):
    codes = guess(HERE, "ops", LIMIT, url="/admin/login/")
    assert codes[-1] == 429
    assert login(HERE, "ops", PASSWORD, url="/admin/login/").status_code == 429


def test_it_unlocks_with_axes_reset(ops):
    guess(HERE, "ops", LIMIT)
    assert login(HERE, "ops", PASSWORD).status_code == 429
    call_command("axes_reset", verbosity=0)
    assert login(HERE, "ops", PASSWORD).status_code == 302


def test_it_lets_an_admin_unlock_from_the_admin(ops):
    guess(HERE, "ops", LIMIT)
    attempt = AccessAttempt.objects.get(username="ops")
    admin = get_user_model().objects.create_superuser("root", "", PASSWORD)
    client = Client(REMOTE_ADDR=ELSEWHERE)
    client.force_login(admin)
    listing = client.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "ops" in listing.content.decode()
    done = client.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert done.status_code == 302
    assert login(HERE, "ops", PASSWORD).status_code == 302


def test_it_logs_failures_and_the_lockout_without_the_password(ops):
    log_file = Path(settings.LOG_DIR) / "system-monitor.log"
    before = log_file.read_text() if log_file.exists() else ""
    secret_guess = f"secret-guess-{uuid.uuid4().hex}"
    login(HERE, "ops", secret_guess)
    guess(HERE, "ops", LIMIT - 1)
    written = log_file.read_text()[len(before) :]
    assert "login failed" in written and "'ops'" in written and HERE in written
    assert "locked out" in written
    assert secret_guess not in written
    # The stored attempt does not keep it either.
    assert secret_guess not in str(list(AccessAttempt.objects.values()))


@pytest.mark.system
def test_it_creates_the_cache_table_on_a_plain_migrate(tmp_path):
    var = tmp_path / "var"
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "OPSPORTAL_VAR_DIR": str(var),
            "LOG_DIR": str(tmp_path / "logs"),
            "SECRET_KEY": "k" * 50,
            "DEBUG": "false",
            "DATABASE_URL": "",
            "REDIS_URL": "",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(var / "opsportal.sqlite3") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "opsportal_cache" in tables
    assert "axes_accessattempt" in tables


def test_it_has_the_cache_table_in_the_database_migrate_made(db):
    # pytest-django builds the test database with `migrate`: on PostgreSQL as on SQLite the table is there,
    # and the shared cache works in it.
    assert "opsportal_cache" in connection.introspection.table_names()
    assert caches["default"].add(f"probe-{uuid.uuid4().hex}", 1, 30)
