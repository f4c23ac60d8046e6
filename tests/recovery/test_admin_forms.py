"""The RecoveryAction admin speaks the config file: the action kind's keys as typed fields, importconfig's schema."""

from __future__ import annotations

import re

import pytest

from configfile.config import parse
from health.models import Service
from recovery.models import RecoveryAction
from tests.health.test_admin_forms import import_error, posted

pytestmark = pytest.mark.django_db

HEAD = "[[service]]\nname = 'web'\nkind = 'tcp'\nhost = '127.0.0.1'\nport = 1\n[[service.recovery]]\n"
ARGV = ["systemctl", "restart", "web app"]


def action(kind: str = "command", **settings: object) -> RecoveryAction:
    service = Service.objects.create(name="web", kind="tcp", settings={"host": "127.0.0.1", "port": 1})
    return RecoveryAction.objects.create(
        service=service, kind=kind, settings=settings or {"argv": ARGV, "env": {"TOKEN": "${WEB_TOKEN}"}}
    )


def change_url(a: RecoveryAction) -> str:
    return f"/admin/recovery/recoveryaction/{a.pk}/change/"


def test_it_shows_an_actions_keys_as_typed_fields(admin_client, monkeypatch):
    monkeypatch.setenv("WEB_TOKEN", "token-value-never-shown")
    page = admin_client.get(change_url(action()))
    html = page.content.decode()
    form = page.context["adminform"].form
    assert {"argv", "env", "env_passthrough", "capture_evidence", "verify_degraded"} <= set(form.fields)
    assert "settings" not in form.fields and not re.search(r'name="settings"', html)
    assert "systemctl\nrestart\nweb app" in html  # one argument per line, the space inside kept
    assert "One argument per line" in form.fields["argv"].help_text
    assert "TOKEN=${WEB_TOKEN}" in html and "token-value-never-shown" not in html


@pytest.mark.parametrize(
    ("kind", "stored", "field", "value", "toml", "message"),
    [
        ("command", None, "argv", "", "kind = 'command'", "is required"),
        (
            "restart_container",
            {"container": "web"},
            "stop_timeout",
            "3601",
            "kind = 'restart_container'\ncontainer = 'web'\nstop_timeout = 3601",
            "must be at most 3600",
        ),
        (
            "http",
            {"url": "http://127.0.0.1:9/restart"},
            "method",
            "PATCH",
            "kind = 'http'\nurl = 'http://127.0.0.1:9/restart'\nmethod = 'PATCH'",
            "must be one of GET, POST, PUT, DELETE",
        ),
    ],
)
def test_it_refuses_a_bad_key_with_the_message_importconfig_gives(
    admin_client, tmp_path, kind, stored, field, value, toml, message
):
    a = action(kind, **(stored or {}))
    before = a.settings
    url = change_url(a)
    page = admin_client.post(url, {**posted(admin_client, url), field: value})
    assert page.status_code == 200
    assert page.context["adminform"].form.errors[field] == [message]
    a.refresh_from_db()
    assert a.settings == before
    assert f"service[0].recovery[0].{field}: {message}" in import_error(tmp_path, HEAD + toml)


def test_it_saves_the_settings_importconfig_stores_for_the_same_toml(admin_client):
    a = action()
    url = change_url(a)
    data = {
        **posted(admin_client, url),
        "argv": "/usr/bin/systemctl\r\nrestart\r\nweb app\r\n",
        "env_passthrough": "HOME\r\nPATH",
        "verify_degraded": "true",
    }
    assert admin_client.post(url, data).status_code == 302
    toml = HEAD + (
        "kind = 'command'\nargv = ['/usr/bin/systemctl', 'restart', 'web app']\n"
        "env = {TOKEN = '${WEB_TOKEN}'}\nenv_passthrough = ['HOME', 'PATH']\nverify_degraded = true\n"
    )
    a.refresh_from_db()
    assert a.settings == parse(toml).services[0]["recovery"][0]["settings"]


def test_it_refuses_restart_process_for_a_service_that_is_no_process(admin_client, tmp_path):
    a = action()
    url = change_url(a)
    page = admin_client.post(url, {**posted(admin_client, url), "kind": "restart_process", "argv": "web"})
    assert page.context["adminform"].form.errors["kind"] == ["restart_process needs a service of kind process"]
    a.refresh_from_db()
    assert a.kind == "command"
    message = import_error(tmp_path, HEAD + "kind = 'restart_process'\nargv = ['web']")
    assert "recovery[0].kind: restart_process needs a service of kind process" in message


def test_it_adds_an_action_choosing_the_kind_first(admin_client):
    service = Service.objects.create(name="web", kind="tcp", settings={"host": "127.0.0.1", "port": 1})
    assert 'href="?kind=restart_tunnel"' in admin_client.get("/admin/recovery/recoveryaction/add/").content.decode()
    add = "/admin/recovery/recoveryaction/add/?kind=restart_tunnel"
    data = {**posted(admin_client, add), "service": str(service.pk), "tunnel": "Edge Tunnel"}
    page = admin_client.post(add, data)
    assert page.context["adminform"].form.errors["tunnel"][0].startswith("must be a slug")
    data["tunnel"] = "edge"
    assert admin_client.post(add, data).status_code == 302
    assert RecoveryAction.objects.get().settings == {"tunnel": "edge"}


def test_it_gives_the_common_columns_their_keys_bounds(admin_client):
    form = admin_client.get(change_url(action())).context["adminform"].form
    assert form.fields["cooldown"].help_text == "seconds between attempts. From 0 to 86400. Default: 300."
    assert form.fields["verify_delay"].help_text.endswith("From 0 to 600. Default: 5.")
