"""The Service admin speaks the config file: a kind's keys are typed fields, checked by importconfig's schema.

Each test drives the real admin over HTTP (Django's test client, a superuser) and compares with what the
config file import says or stores for the same values.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from configfile.config import parse
from health.models import Service

pytestmark = pytest.mark.django_db

SETTINGS = {
    "url": "http://127.0.0.1:9/health",
    "expect_status": [200, 204],
    "headers": {"Authorization": "Bearer ${ADMIN_FORM_TOKEN}"},
}
HEAD = "[[service]]\nname = 'web'\nkind = 'http'\n"


def change_url(service: Service) -> str:
    return f"/admin/health/service/{service.pk}/change/"


def web(**settings: Any) -> Service:
    return Service.objects.create(name="web", kind="http", settings=settings or dict(SETTINGS))


def posted(client: Any, url: str) -> dict[str, Any]:
    """What the change form posts back unchanged: every field's shown value, as a browser sends it."""
    form = client.get(url).context["adminform"].form
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list):
            data[name] = [str(v) for v in value]
        elif value is not None:
            data[name] = str(value).replace("\n", "\r\n")  # a browser sends a textarea's lines as CRLF
    return data


def import_error(tmp_path: Any, toml: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(CommandError) as info:
        call_command("importconfig", str(path))
    return str(info.value)


def test_it_shows_the_keys_of_an_http_service_as_typed_fields_with_help_text(admin_client, monkeypatch):
    monkeypatch.setenv("ADMIN_FORM_TOKEN", "tok-value-never-shown")
    page = admin_client.get(change_url(web()))
    html = page.content.decode()

    form = page.context["adminform"].form
    for key in ("url", "method", "headers", "expect_status", "verify_tls", "follow_redirects", "cert_warn_days"):
        assert key in form.fields, key
    assert "settings" not in form.fields
    assert not re.search(r'<textarea[^>]*name="settings"', html)  # no raw JSON
    assert re.search(r'<input[^>]*name="url"[^>]*value="http://127.0.0.1:9/health"', html)
    assert re.search(r'<select[^>]*name="method"', html)  # a choice is a select
    assert "From 100 to 599" in form.fields["expect_status"].help_text
    assert "One integer per line" in form.fields["expect_status"].help_text
    assert "default: any 2xx" in form.fields["expect_status"].help_text
    assert "Default: 14" in form.fields["cert_warn_days"].help_text and "From 0 to 3650" in html
    assert "One KEY=value per line" in html
    # A ${VAR} is shown as the reference it is; its value is never expanded into the page.
    assert "Authorization=Bearer ${ADMIN_FORM_TOKEN}" in html
    assert "tok-value-never-shown" not in html
    assert "200\n204" in html  # a list: one item per line


BAD = [
    ("url", "", "", "is required"),  # an empty field is a key left out, as in the file
    ("method", "PATCH", "method = 'PATCH'", "must be one of GET, HEAD, POST, PUT, OPTIONS"),
    ("expect_status", "200\r\n700", "expect_status = [200, 700]", "must be at most 599"),
    ("expect_status", "ok", "expect_status = ['ok']", "must be a non-empty list of integers"),
    ("cert_warn_days", "4000", "cert_warn_days = 4000", "must be at most 3650"),
    ("cert_warn_days", "1.5", "cert_warn_days = 1.5", "must be an integer"),
    ("verify_tls", "yes", "verify_tls = 'yes'", "must be true or false"),
    ("ca_file", "certs/ca.pem", "ca_file = 'certs/ca.pem'", "must be an absolute path"),
]


@pytest.mark.parametrize(("field", "value", "line", "message"), BAD)
def test_it_refuses_a_bad_value_on_its_field_with_the_message_importconfig_gives(
    admin_client, tmp_path, field, value, line, message
):
    service = web()
    url = change_url(service)
    page = admin_client.post(url, {**posted(admin_client, url), field: value})

    assert page.status_code == 200
    errors = page.context["adminform"].form.errors
    assert errors[field] == [message], errors
    assert message in page.content.decode()
    service.refresh_from_db()
    assert service.settings == SETTINGS  # nothing changed

    toml = HEAD + ("url = 'http://127.0.0.1:9/health'\n" if field != "url" else "") + line
    assert f"service[0].{field}: {message}" in import_error(tmp_path, toml)


def test_it_says_a_required_key_left_out_is_required(admin_client):
    service = Service.objects.create(name="db", kind="tcp", settings={"host": "127.0.0.1", "port": 5432})
    url = change_url(service)
    page = admin_client.post(url, {**posted(admin_client, url), "host": ""})
    assert page.context["adminform"].form.errors["host"] == ["is required"]


def test_it_refuses_a_table_line_without_an_equals_sign(admin_client):
    service = web()
    url = change_url(service)
    page = admin_client.post(url, {**posted(admin_client, url), "headers": "Authorization: Bearer x"})
    assert page.context["adminform"].form.errors["headers"] == ["line 1: expected KEY=value"]
    service.refresh_from_db()
    assert service.settings == SETTINGS


def test_it_saves_exactly_the_settings_importconfig_stores_for_the_same_toml(admin_client):
    service = web()
    url = change_url(service)
    data = {
        **posted(admin_client, url),
        "method": "POST",
        "body": '{"ping": true}',
        "headers": "Authorization=Bearer ${ADMIN_FORM_TOKEN}\r\nX-Probe = opsportal",
        "expect_status": "200\r\n\r\n201",
        "verify_tls": "false",
        "follow_redirects": "same-origin",
        "json_equals": "42",
        "json_path": "data.0.id",
        "cert_warn_days": "30",
        "evidence_log": "/var/log/web.log\r\n/var/log/web.err\r\n",  # a common key that is a list, typed too
    }
    page = admin_client.post(url, data)
    assert page.status_code == 302, page.context["adminform"].form.errors

    toml = HEAD + (
        "url = 'http://127.0.0.1:9/health'\nmethod = 'POST'\nbody = '{\"ping\": true}'\n"
        "headers = {Authorization = 'Bearer ${ADMIN_FORM_TOKEN}', X-Probe = 'opsportal'}\n"
        "expect_status = [200, 201]\nverify_tls = false\nfollow_redirects = 'same-origin'\n"
        "json_equals = 42\njson_path = 'data.0.id'\ncert_warn_days = 30\n"
        "evidence_log = ['/var/log/web.log', '/var/log/web.err']\n"
    )
    service.refresh_from_db()
    imported = parse(toml).services[0]
    assert service.settings == imported["settings"]
    assert service.evidence_log == imported["evidence_log"]
    assert service.settings["json_equals"] == 42 and service.settings["verify_tls"] is False


def test_it_keeps_the_settings_as_they_are_when_posted_back_unchanged(admin_client):
    odd = {"host": "127.0.0.1", "port": 25, "send": "QUIT  ", "expect": "220"}
    service = Service.objects.create(name="mail", kind="tcp", settings=odd)
    url = change_url(service)
    page = admin_client.post(url, posted(admin_client, url))
    assert page.status_code == 302
    service.refresh_from_db()
    assert service.settings == odd  # the trailing spaces an input would trim are kept


def test_it_keeps_the_runtime_internals_read_only(admin_client):
    service = web()
    Service.objects.filter(pk=service.pk).update(claimed_by="loop-a", flap_percent=12.5, status="up")
    url = change_url(service)
    page = admin_client.get(url)
    form = page.context["adminform"].form
    for internal in ("claimed_by", "flapping", "flap_percent", "status", "consecutive_failures", "next_due_at"):
        assert internal not in form.fields, internal
    html = page.content.decode()
    assert "Runtime (read-only)" in html and "loop-a" in html and "12.5 %" in html
    assert "icon-no.svg" not in html  # read-only flags are words ("no"), not red crosses

    data = {
        **posted(admin_client, url),
        "claimed_by": "intruder",
        "flapping": "on",
        "flap_percent": "99",
        "status": "down",
    }
    assert admin_client.post(url, data).status_code == 302
    service.refresh_from_db()
    assert (service.claimed_by, service.flapping, service.flap_percent, service.status) == ("loop-a", False, 12.5, "up")


def test_it_lists_latency_with_units_and_criticality_as_words(admin_client):
    Service.objects.create(
        name="web", kind="tcp", settings={"host": "h", "port": 1}, last_latency_ms=28.887441000051695
    )
    Service.objects.create(name="batch", kind="tcp", settings={"host": "h", "port": 1}, critical=False)
    html = admin_client.get("/admin/health/service/").content.decode()
    assert "28.9 ms" in html and "28.887" not in html
    assert re.search(r'class="field-criticality">critical<', html)
    assert re.search(r'class="field-criticality">—<', html)
    assert re.search(r'class="field-latency">—<', html)
    assert "icon-no.svg" not in html.split('id="result_list"')[1]  # no red ✖ for a non-critical service


def test_it_adds_a_tcp_service_choosing_the_kind_first(admin_client):
    picker = admin_client.get("/admin/health/service/add/").content.decode()
    assert 'href="?kind=tcp"' in picker and 'href="?kind=http"' in picker
    assert picker.index('href="?kind=tcp"') < picker.index('name="name"')  # the kind comes first

    page = admin_client.get("/admin/health/service/add/?kind=tcp")
    form = page.context["adminform"].form
    assert {"host", "port", "send", "expect"} <= set(form.fields)
    assert "url" not in form.fields
    assert form["kind"].value() == "tcp"

    data = {**posted(admin_client, "/admin/health/service/add/?kind=tcp"), "name": "pg", "host": "127.0.0.1"}
    data["port"] = "70000"
    page = admin_client.post("/admin/health/service/add/?kind=tcp", data)
    assert page.context["adminform"].form.errors["port"] == ["must be at most 65535"]
    assert not Service.objects.filter(name="pg").exists()

    data["port"] = "5432"
    assert admin_client.post("/admin/health/service/add/?kind=tcp", data).status_code == 302
    service = Service.objects.get(name="pg")
    assert service.kind == "tcp"
    toml = "[[service]]\nname = 'pg'\nkind = 'tcp'\nhost = '127.0.0.1'\nport = 5432\n"
    assert service.settings == parse(toml).services[0]["settings"]


def test_it_shows_the_new_kinds_keys_when_the_kind_is_changed(admin_client):
    service = web()
    url = change_url(service)
    page = admin_client.post(url, {**posted(admin_client, url), "kind": "tcp"})
    form = page.context["adminform"].form
    assert form.errors["host"] == ["is required"] and "port" in form.fields and "url" not in form.fields
    service.refresh_from_db()
    assert service.kind == "http" and service.settings == SETTINGS


def test_it_shows_a_value_with_line_breaks_in_a_textarea_and_keeps_it(admin_client):
    crlf = {"host": "127.0.0.1", "port": 25, "send": "QUIT\r\n"}
    service = Service.objects.create(name="mail", kind="tcp", settings=crlf)
    url = change_url(service)
    assert re.search(r'<textarea[^>]*name="send"', admin_client.get(url).content.decode())
    assert admin_client.post(url, posted(admin_client, url)).status_code == 302
    service.refresh_from_db()
    assert service.settings == crlf


def test_it_shows_a_rule_over_several_keys_as_the_forms_own_error(admin_client, tmp_path):
    service = Service.objects.create(name="worker", kind="process", settings={"process_name": "worker"})
    url = change_url(service)
    page = admin_client.post(url, {**posted(admin_client, url), "pid_file": "/run/worker.pid"})
    message = "needs exactly one of process_name, cmdline_contains, pid_file"
    assert page.context["adminform"].form.non_field_errors() == [message]
    service.refresh_from_db()
    assert service.settings == {"process_name": "worker"}
    toml = "[[service]]\nname = 'w'\nkind = 'process'\nprocess_name = 'worker'\npid_file = '/run/worker.pid'\n"
    assert f"service[0]: {message}" in import_error(tmp_path, toml)


def test_it_gives_the_common_columns_their_keys_bounds_and_defaults(admin_client):
    form = admin_client.get(change_url(web())).context["adminform"].form
    assert form.fields["interval"].help_text == "seconds. From 1 to 86400. Default: 60."
    assert form.fields["timeout"].help_text == "seconds. From 0.1 to 3600. Default: 5."
    assert "One item per line" in form.fields["evidence_log"].help_text
    assert "From 0 to 3600000. Default: 2000." in form.fields["degraded_latency_ms"].help_text
