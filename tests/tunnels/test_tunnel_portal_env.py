"""Issue 14 item 2: the portal's own secrets (PORTAL_ONLY_ENV) never reach a tunnel's connector, not by `${NAME}`."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.procs import PORTAL_ONLY_ENV
from tests.tunnels.conftest import assert_clean
from tunnels import watchdog

pytestmark = pytest.mark.django_db

PORTAL_SECRET = "portal-only-secret-value-4711"


@pytest.mark.parametrize("where", ["env", "argv"])
def test_it_refuses_to_start_a_connector_whose_config_names_a_portal_secret(make_tunnel, monkeypatch, where):
    for name in PORTAL_ONLY_ENV:
        monkeypatch.setenv(name, PORTAL_SECRET)
    fake = make_tunnel()
    if where == "env":
        fake.tunnel.env = {"TUNNEL_TOKEN": "${SECRET_KEY}"}
    else:
        fake.tunnel.command = [*fake.tunnel.command, "--token", "${SECRET_KEY}"]
    fake.tunnel.save()
    result = watchdog.check_now(fake.reload())
    running = fake.processes()
    leaked = [p.pid for p in running if PORTAL_SECRET.encode() in Path(f"/proc/{p.pid}/environ").read_bytes()]
    assert running == [] and leaked == [], result
    assert "${SECRET_KEY}" in result.detail and PORTAL_SECRET not in result.detail
    assert_clean(fake)


def test_a_connector_env_naming_another_variable_still_starts(make_tunnel, monkeypatch):
    monkeypatch.setenv("OTHER_TUNNEL_TOKEN", "other-token-value")
    fake = make_tunnel(env={"TUNNEL_TOKEN": "${OTHER_TUNNEL_TOKEN}"})
    pid = fake.start()
    assert b"TUNNEL_TOKEN=other-token-value" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert_clean(fake)
