from __future__ import annotations

import json
import sys

import pytest

from health.probes.command import CommandProbe
from opsportal.procs import child_env


def test_it_keeps_the_portal_secrets_out_of_a_child_environment(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "portal-secret-key-value")
    monkeypatch.setenv("DATABASE_URL", "postgres://portal:pw@db/portal")
    monkeypatch.setenv("PATH_FOR_CHILD", "kept")
    env = child_env({"EXTRA": "1"})
    assert "SECRET_KEY" not in env and "DATABASE_URL" not in env
    assert env["PATH_FOR_CHILD"] == "kept" and env["EXTRA"] == "1"


@pytest.mark.django_db
def test_it_runs_a_command_probe_without_the_portal_secrets(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "portal-secret-key-value")
    code = "import json, os; print(json.dumps(sorted(k for k in ('SECRET_KEY', 'HOME') if k in os.environ)))"
    outcome = CommandProbe({"argv": [sys.executable, "-c", code]}, timeout=10).run()
    assert json.loads(outcome.detail) == ["HOME"]
