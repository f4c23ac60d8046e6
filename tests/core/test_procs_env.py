"""A child's environment is minimal: PATH, HOME, LANG, LC_*, TZ and what its own config names, never the portal's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from core import procs
from core.procs import PORTAL_ONLY_ENV, child_env, run_argv, start_detached
from health.probes.command import CommandProbe
from health.runner import probe_once
from tests.factories import ServiceFactory
from tests.servers import wait_for

PY = sys.executable
# Prints the child's whole environment as JSON (to stdout, or to the file named by argv[1]).
PRINT_ENV = (
    "import json, os, sys\n"
    "text = json.dumps(dict(os.environ))\n"
    "open(sys.argv[1], 'w').write(text) if len(sys.argv) > 1 else print(text)\n"
)


@pytest.fixture
def portal_env(monkeypatch):
    """The portal's environment as an install has it: its own secrets, another service's secret, locale, TZ."""
    monkeypatch.setenv("SECRET_KEY", "portal-secret-key-value")
    monkeypatch.setenv("DATABASE_URL", "postgres://portal:pw@db/portal")
    monkeypatch.setenv("OTHER_SERVICE_SECRET", "other-service-secret-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    monkeypatch.setenv("NEEDED_BY_CHILD", "passed-through")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("TZ", "UTC")


def test_it_gives_a_child_only_the_base_variables_and_what_its_config_names(portal_env):
    env = child_env({"EXTRA": "1"}, passthrough=["NEEDED_BY_CHILD", "NOT_SET_ANYWHERE"])
    assert set(env) <= {*procs.BASE_ENV, "LC_TIME", "EXTRA", "NEEDED_BY_CHILD"}
    assert env["EXTRA"] == "1" and env["NEEDED_BY_CHILD"] == "passed-through"
    assert env["LANG"] == "C.UTF-8" and env["LC_TIME"] == "C" and env["TZ"] == "UTC"
    assert "OTHER_SERVICE_SECRET" not in env and "SECRET_KEY" not in env


def test_a_real_child_of_run_argv_sees_no_portal_or_other_service_secret(portal_env):
    done = run_argv([PY, "-c", PRINT_ENV], 10, env={"OPSPORTAL_SERVICE": "svc"}, passthrough=["NEEDED_BY_CHILD"])
    seen = json.loads(done.stdout)
    for name in ("OTHER_SERVICE_SECRET", "AWS_SECRET_ACCESS_KEY", *PORTAL_ONLY_ENV):
        assert name not in seen
    assert seen["PATH"]
    assert seen["NEEDED_BY_CHILD"] == "passed-through" and seen["OPSPORTAL_SERVICE"] == "svc"
    assert "other-service-secret-value" not in done.stdout.decode()


def test_a_detached_child_gets_the_same_minimal_environment(portal_env, tmp_path: Path):
    out = tmp_path / "env.json"
    ref = start_detached(
        [PY, "-c", PRINT_ENV, str(out)], env={"TUNNEL_TOKEN": "t0ken"}, passthrough=["NEEDED_BY_CHILD"]
    )
    assert wait_for(lambda: out.exists() and out.read_text().endswith("}"), timeout=10)
    assert wait_for(lambda: not ref.alive(), timeout=10)
    seen = json.loads(out.read_text())
    assert "OTHER_SERVICE_SECRET" not in seen and "SECRET_KEY" not in seen
    assert seen["PATH"] and seen["TUNNEL_TOKEN"] == "t0ken" and seen["NEEDED_BY_CHILD"] == "passed-through"


def test_start_detached_keeps_its_positional_signature(portal_env, tmp_path: Path):
    out = tmp_path / "env.json"
    start_detached([PY, "-c", PRINT_ENV, str(out)], str(tmp_path / "log"), {"A": "1"})
    assert wait_for(lambda: out.exists() and out.read_text().endswith("}"), timeout=10)
    seen = json.loads(out.read_text())
    assert seen["A"] == "1" and "OTHER_SERVICE_SECRET" not in seen


@pytest.mark.django_db
def test_it_runs_a_command_probe_with_only_what_it_names(portal_env):
    # A probe's detail is its first 300 characters: print only the names asked about.
    code = "import json, os, sys; print(json.dumps(sorted(k for k in sys.argv[1:] if k in os.environ)))"
    names = ["OTHER_SERVICE_SECRET", "SECRET_KEY", "PATH", "NEEDED_BY_CHILD"]
    settings = {"argv": [PY, "-c", code, *names], "env_passthrough": ["NEEDED_BY_CHILD"]}
    outcome = CommandProbe(settings, timeout=10).run()
    assert json.loads(outcome.detail) == ["NEEDED_BY_CHILD", "PATH"]


def test_env_passthrough_may_not_name_the_portal_s_own_secrets():
    for name in PORTAL_ONLY_ENV:
        with pytest.raises(ValueError, match=name):
            child_env(passthrough=[name])


@pytest.mark.django_db
@pytest.mark.parametrize("name", PORTAL_ONLY_ENV)
def test_it_refuses_a_child_env_value_naming_the_portal_s_own_secret(portal_env, monkeypatch, tmp_path, name):
    # `env = {X = "${SECRET_KEY}"}` would hand the portal's own secret to the child under another name.
    monkeypatch.setenv("REDIS_URL", "redis://:pw@127.0.0.1/0")
    monkeypatch.setenv("METRICS_TOKEN", "metrics-token-value")
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    out = tmp_path / "env.json"
    settings = {"argv": [PY, "-c", PRINT_ENV, str(out)], "env": {"X": f"prefix-${{{name}}}"}}
    outcome = probe_once(ServiceFactory.build(kind="command", settings=settings, timeout=10))
    assert not out.exists(), out.read_text()  # the child never ran
    assert outcome.status == "misconfigured" and f"${{{name}}}" in outcome.detail, outcome.detail


@pytest.mark.django_db
def test_a_child_env_value_naming_another_variable_still_reaches_the_child(portal_env, tmp_path):
    out = tmp_path / "env.json"
    settings = {"argv": [PY, "-c", PRINT_ENV, str(out)], "env": {"X": "${NEEDED_BY_CHILD}"}}
    outcome = probe_once(ServiceFactory.build(kind="command", settings=settings, timeout=10))
    assert outcome.status == "up", outcome.detail
    assert json.loads(out.read_text())["X"] == "passed-through"
