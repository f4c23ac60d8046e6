"""deploy/: the env template documents every setting, and the units keep their promises."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = BASE_DIR / "deploy" / "opsportal.env.example"
# Read by the test suite only, never by a deployment.
NOT_DEPLOYMENT = {"TEST_DATABASE_NAME"}


def settings_read() -> set[str]:
    names = set(re.findall(r'env_[a-z]+\(\s*"([A-Z][A-Z0-9_]*)"', (BASE_DIR / "opsportal" / "settings.py").read_text()))
    names |= set(re.findall(r'environ\.get\("([A-Z][A-Z0-9_]*)"', (BASE_DIR / "gunicorn.conf.py").read_text()))
    names |= set(re.findall(r'_env_int\("([A-Z][A-Z0-9_]*)"', (BASE_DIR / "gunicorn.conf.py").read_text()))
    return names - NOT_DEPLOYMENT - {"WATCHDOG_USEC"}  # set by systemd itself


def documented() -> set[str]:
    return set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(BASE_DIR / "deploy" / name)
    return parser


def test_it_documents_every_setting_in_the_env_template() -> None:
    missing = sorted(settings_read() - documented())
    assert not missing, f"add these to deploy/opsportal.env.example (and the README's Settings table): {missing}"


def test_it_leaves_the_secret_key_blank_in_the_template() -> None:
    assert re.search(r"^SECRET_KEY=$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)


def test_it_restarts_units_on_failure_with_a_start_limit() -> None:
    for name in ("opsportal-web.service", "opsportal-qcluster@.service"):
        parsed = unit(name)
        assert parsed["Service"]["Restart"] == "on-failure", name
        assert int(parsed["Unit"]["StartLimitBurst"]) > 0, name
        assert parsed["Service"]["EnvironmentFile"] == "/etc/opsportal/opsportal.env", name
        assert "User" in parsed["Service"] and parsed["Service"]["User"] != "root", name


def test_it_uses_the_watchdog_only_where_the_process_pings_it() -> None:
    web = unit("opsportal-web.service")["Service"]
    assert web["Type"] == "notify" and int(web["WatchdogSec"]) > 0
    # gunicorn's graceful stop must fit inside systemd's stop timeout.
    assert int(web["TimeoutStopSec"]) > 30
    assert "WatchdogSec" not in unit("opsportal-qcluster@.service")["Service"]
