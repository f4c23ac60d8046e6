"""Issue 14 item 6: a tunnel's token goes to the connector in its environment (`env`), never in its argv."""

from __future__ import annotations

import io
import textwrap
import tomllib
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from configfile.config import export_text
from tests.tunnels.conftest import assert_clean
from tunnels import watchdog
from tunnels.models import Tunnel, TunnelEvent

pytestmark = pytest.mark.django_db

TOKEN = "tunnel-token-eyJhIjoiMTIzNDU2Nzg5MCJ9"


def test_it_passes_the_token_in_the_connectors_environment_never_its_argv(make_tunnel, monkeypatch):
    monkeypatch.setenv("FAKE_TUNNEL_TOKEN", TOKEN)
    fake = make_tunnel(env={"TUNNEL_TOKEN": "${FAKE_TUNNEL_TOKEN}", "TUNNEL_LOGLEVEL": "info"})
    pid = fake.start()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert TOKEN.encode() not in cmdline  # what `ps` shows every local user
    assert f"TUNNEL_TOKEN={TOKEN}".encode() in environ
    assert b"TUNNEL_LOGLEVEL=info" in environ
    assert not TunnelEvent.objects.filter(detail__contains="eyJhIjoi").exists()
    # The row keeps the reference, never the value.
    assert fake.reload().env == {"TUNNEL_TOKEN": "${FAKE_TUNNEL_TOKEN}", "TUNNEL_LOGLEVEL": "info"}
    assert_clean(fake)


def test_it_fails_clearly_when_an_env_variable_is_not_set(make_tunnel, monkeypatch):
    monkeypatch.delenv("FAKE_TUNNEL_TOKEN", raising=False)
    fake = make_tunnel(env={"TUNNEL_TOKEN": "${FAKE_TUNNEL_TOKEN}"})
    result = watchdog.check_now(fake.tunnel)
    assert "environment variable FAKE_TUNNEL_TOKEN is not set" in result.detail
    assert fake.processes() == []
    assert_clean(fake)


CONFIG = """
[[service]]
name = "worker"
kind = "process"
cmdline_contains = "worker.py"

  [[service.recovery]]
  kind = "restart_process"
  argv = ["python", "worker.py", "--password", "${WORKER_PASSWORD}"]

  [[service.recovery]]
  kind = "command"
  argv = ["notify", "--key=${NOTIFY_KEY}"]
  env = {NOTIFY_TOKEN = "${NOTIFY_KEY}"}

[[tunnel]]
name = "main"
command = ["cloudflared", "tunnel", "run", "--token", "${CLOUDFLARE_TUNNEL_TOKEN}"]

[[tunnel]]
name = "safe"
command = ["cloudflared", "tunnel", "run"]
env = {TUNNEL_TOKEN = "${CLOUDFLARE_TUNNEL_TOKEN}"}
"""


def test_it_imports_and_exports_a_tunnel_env_and_warns_about_variables_in_argv(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(CONFIG))
    out, err = io.StringIO(), io.StringIO()
    summary = call_command("importconfig", str(path), stdout=out, stderr=err)
    assert "tunnels: 2 created" in summary  # a warning, not a refusal
    warnings = err.getvalue()
    assert "tunnel[0].command" in warnings and "${CLOUDFLARE_TUNNEL_TOKEN}" in warnings and "ps" in warnings
    assert "service[0].recovery[0].argv" in warnings and "${WORKER_PASSWORD}" in warnings
    assert "service[0].recovery[1].argv" in warnings and "${NOTIFY_KEY}" in warnings
    # env is the place for it: no argv warning for the safe tunnel (only that its variable is unset here).
    safe = [line for line in warnings.splitlines() if "tunnel[1]" in line]
    assert safe and all("argv" not in line and ").env." in line and "is not set" in line for line in safe), safe
    assert Tunnel.objects.get(name="safe").env == {"TUNNEL_TOKEN": "${CLOUDFLARE_TUNNEL_TOKEN}"}
    exported = tomllib.loads(export_text())
    by_name = {t["name"]: t for t in exported["tunnel"]}
    assert by_name["safe"]["env"] == {"TUNNEL_TOKEN": "${CLOUDFLARE_TUNNEL_TOKEN}"}
    assert "env" not in by_name["main"]
    # Exported and imported again: the same rows.
    again = tmp_path / "again.toml"
    again.write_text(export_text())
    summary = call_command("importconfig", str(again), stderr=io.StringIO())
    assert "tunnels: 0 created, 0 updated, 2 unchanged" in summary


def test_it_refuses_an_env_that_is_not_a_table_of_strings(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[tunnel]]\nname = "x"\ncommand = ["c"]\nenv = {TUNNEL_TOKEN = 5}\n')
    with pytest.raises(CommandError, match=r"tunnel\[0\]\.env: must be a table of strings"):
        call_command("importconfig", str(path))
