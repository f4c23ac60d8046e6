"""Production defaults, read by a fresh interpreter with a crafted environment (settings load once per process)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
# Variables a developer's shell or `.env` might hold; each run sets them explicitly ("" means the default).
CONTROLLED = (
    "DEBUG",
    "SECRET_KEY",
    "HTTPS",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "STATIC_MANIFEST",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "REDIS_URL",
)
SHOW = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "DEBUG": s.DEBUG,
    "SECURE_SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": s.CSRF_COOKIE_SECURE,
    "SECURE_HSTS_SECONDS": s.SECURE_HSTS_SECONDS,
    "SECURE_PROXY_SSL_HEADER": s.SECURE_PROXY_SSL_HEADER,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "CSRF_TRUSTED_ORIGINS": s.CSRF_TRUSTED_ORIGINS,
    "staticfiles": s.STORAGES["staticfiles"]["BACKEND"],
}))
"""


def run(tmp_path: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    # Nothing from the test process leaks in (browser tests set DJANGO_ALLOW_ASYNC_UNSAFE, an async.E001).
    full = {k: v for k, v in os.environ.items() if k not in CONTROLLED and not k.startswith("DJANGO_")}
    full.update(dict.fromkeys(CONTROLLED, ""))
    full.update(
        DJANGO_SETTINGS_MODULE="opsportal.settings",
        OPSPORTAL_VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    full.update(env)
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=full, capture_output=True, text=True, timeout=60, check=False
    )


def show(tmp_path: Path, **env: str) -> dict:
    proc = run(tmp_path, ["-c", SHOW], **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def production_env() -> dict[str, str]:
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "HTTPS": "true",
        "ALLOWED_HOSTS": "ops.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://ops.example.org",
    }


@pytest.mark.system
def test_it_refuses_to_start_without_secret_key_when_debug_is_off(tmp_path: Path) -> None:
    proc = run(tmp_path, ["-c", SHOW], DEBUG="false")
    assert proc.returncode != 0
    assert "SECRET_KEY: must be set when DEBUG is off" in proc.stderr
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.system
def test_it_keeps_debug_off_by_default(tmp_path: Path) -> None:
    got = show(tmp_path, SECRET_KEY=secrets.token_urlsafe(50))
    assert got["DEBUG"] is False


@pytest.mark.system
def test_it_generates_a_local_key_only_in_debug(tmp_path: Path) -> None:
    got = show(tmp_path, DEBUG="true")
    assert got["DEBUG"] is True
    assert len((tmp_path / "secret_key").read_text().strip()) >= 50


@pytest.mark.system
def test_it_keeps_cookies_plain_and_no_hsts_without_https(tmp_path: Path) -> None:
    got = show(tmp_path, SECRET_KEY=secrets.token_urlsafe(50))
    assert got["SESSION_COOKIE_SECURE"] is False
    assert got["CSRF_COOKIE_SECURE"] is False
    assert got["SECURE_SSL_REDIRECT"] is False
    assert got["SECURE_HSTS_SECONDS"] == 0
    assert got["SECURE_PROXY_SSL_HEADER"] is None


@pytest.mark.system
def test_it_turns_on_secure_cookies_redirect_and_hsts_with_https(tmp_path: Path) -> None:
    got = show(tmp_path, **production_env())
    assert got["SESSION_COOKIE_SECURE"] is True
    assert got["CSRF_COOKIE_SECURE"] is True
    assert got["SECURE_SSL_REDIRECT"] is True
    assert got["SECURE_HSTS_SECONDS"] == 31_536_000
    assert got["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert got["ALLOWED_HOSTS"] == ["ops.example.org"]
    assert got["CSRF_TRUSTED_ORIGINS"] == ["https://ops.example.org"]


@pytest.mark.system
def test_it_lets_each_https_setting_be_overridden(tmp_path: Path) -> None:
    got = show(tmp_path, **production_env(), SECURE_SSL_REDIRECT="false", SECURE_HSTS_SECONDS="3600")
    assert got["SECURE_SSL_REDIRECT"] is False
    assert got["SECURE_HSTS_SECONDS"] == 3600
    assert got["SESSION_COOKIE_SECURE"] is True


@pytest.mark.system
def test_it_names_the_variable_of_a_bad_value(tmp_path: Path) -> None:
    proc = run(tmp_path, ["-c", SHOW], **production_env(), SECURE_HSTS_SECONDS="a year")
    assert proc.returncode != 0
    assert "SECURE_HSTS_SECONDS: must be an integer >= 0, got 'a year'" in proc.stderr


@pytest.mark.system
def test_it_serves_hashed_compressed_static_files_in_production(tmp_path: Path) -> None:
    production = show(tmp_path, **production_env())
    assert production["staticfiles"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    debug = show(tmp_path, DEBUG="true")
    assert debug["staticfiles"] == "django.contrib.staticfiles.storage.StaticFilesStorage"


def test_it_uses_plain_static_files_under_the_test_suite() -> None:
    from django.conf import settings

    # Tests render templates without a collectstatic: the manifest storage would fail on every {% static %}.
    assert settings.STORAGES["staticfiles"]["BACKEND"] == "django.contrib.staticfiles.storage.StaticFilesStorage"


@pytest.mark.system
def test_it_passes_check_deploy_with_a_production_env(tmp_path: Path) -> None:
    proc = run(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout
    assert "WARNINGS" not in proc.stdout + proc.stderr


@pytest.mark.system
def test_it_warns_in_check_deploy_without_https(tmp_path: Path) -> None:
    env = {**production_env(), "HTTPS": "false"}
    proc = run(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **env)
    assert proc.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in proc.stderr


@pytest.mark.system
@pytest.mark.parametrize("key", ["short", "django-insecure-" + "k" * 50, "a" * 60])
def test_it_warns_in_check_deploy_about_a_weak_secret_key(tmp_path: Path, key: str) -> None:
    env = {**production_env(), "SECRET_KEY": key}
    proc = run(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **env)
    assert proc.returncode != 0
    assert "security.W009" in proc.stderr
