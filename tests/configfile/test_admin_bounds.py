"""The admin refuses what the config file refuses, with the same message (one schema: the spec Keys).

Each case posts the real admin change form of a row with one value changed, and imports the same value
through `importconfig`: both refuse it, both say the same words, and the row keeps its value.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django import forms
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.db import models
from django.test import RequestFactory

from health.models import MaintenanceWindow, Service
from notify.models import Channel
from recovery.models import RecoveryAction
from tunnels.models import Tunnel

pytestmark = pytest.mark.django_db


def form_data(obj: models.Model, admin_user: Any) -> dict[str, Any]:
    """What the admin's change form would post back unchanged for `obj`."""
    request = RequestFactory().get("/")
    request.user = admin_user
    model_admin = admin.site._registry[type(obj)]
    form = model_admin.get_form(request, obj)(instance=obj)
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if isinstance(field, forms.JSONField):
            data[name] = json.dumps(value if value is not None else field.initial)
        elif isinstance(field, forms.ModelMultipleChoiceField):
            data[name] = [str(getattr(v, "pk", v)) for v in value or []]
        elif isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        elif isinstance(field, forms.NullBooleanField):
            data[name] = {True: "true", False: "false"}.get(value, "unknown")
        elif value is not None:
            data[name] = getattr(value, "pk", value)
    return data


def rows() -> dict[str, models.Model]:
    web = Service.objects.create(name="web", kind="database", settings={})
    return {
        "service": web,
        "action": RecoveryAction.objects.create(service=web, kind="command", settings={"argv": ["true"]}),
        "tunnel": Tunnel.objects.create(name="edge", command=["c"]),
        "channel": Channel.objects.create(name="ops", url="json://127.0.0.1"),
        "window": MaintenanceWindow.objects.create(name="nightly", cron="0 3 * * *"),
    }


SERVICE = "[[service]]\nname = 'web'\nkind = 'database'\n"
ACTION = SERVICE + "[[service.recovery]]\nkind = 'command'\nargv = ['true']\n"
CASES = [
    ("service", "interval", "86401", SERVICE + "interval = 86401", "must be at most 86400"),
    ("service", "interval", "90000", SERVICE + "interval = 90000", "must be at most 86400"),
    ("service", "remind_every", "2592001", SERVICE + "remind_every = 2592001", "must be at most 2592000"),
    ("service", "interval", "0", SERVICE + "interval = 0", "must be a positive integer"),
    ("service", "timeout", "0.05", SERVICE + "timeout = 0.05", "must be at least 0.1"),
    ("service", "timeout", "3601", SERVICE + "timeout = 3601", "must be at most 3600"),
    ("service", "failure_threshold", "1001", SERVICE + "failure_threshold = 1001", "must be at most 1000"),
    ("service", "degraded_latency_ms", "3600001", SERVICE + "degraded_latency_ms = 3600001", "must be at most"),
    ("action", "cooldown", "9223372036854775807", ACTION + "cooldown = 9223372036854775807", "must be at most 86400"),
    ("action", "verify_delay", "1e9", ACTION + "verify_delay = 1e9", "must be at most 600"),
    ("action", "timeout", "3601", ACTION + "timeout = 3601", "must be at most 3600"),
    ("action", "escalate_after", "0", ACTION + "escalate_after = 0", "must be a positive integer"),
    ("tunnel", "settle_seconds", "1e9", "[[tunnel]]\nname='edge'\ncommand=['c']\nsettle_seconds=1e9", "at most 300"),
    ("tunnel", "startup_timeout", "601", "[[tunnel]]\nname='edge'\ncommand=['c']\nstartup_timeout=601", "at most 600"),
    ("tunnel", "check_interval", "86401", "[[tunnel]]\nname='edge'\ncommand=['c']\ncheck_interval=86401", "at most"),
    (
        "tunnel",
        "max_restarts_per_hour",
        "61",
        "[[tunnel]]\nname='edge'\ncommand=['c']\nmax_restarts_per_hour=61",
        "must be at most 60",
    ),
    (
        "channel",
        "remind_every",
        "9223372036854775807",
        "[[channel]]\nname='ops'\nurl='json://127.0.0.1'\nremind_every=9223372036854775807",
        "must be at most 2592000",
    ),
]
URLS = {
    "service": "/admin/health/service/{}/change/",
    "action": "/admin/recovery/recoveryaction/{}/change/",
    "tunnel": "/admin/tunnels/tunnel/{}/change/",
    "channel": "/admin/notify/channel/{}/change/",
    "window": "/admin/health/maintenancewindow/{}/change/",
}


@pytest.mark.parametrize(("what", "field", "value", "toml", "message"), CASES)
def test_it_refuses_in_the_admin_what_the_import_refuses_with_the_same_message(
    admin_client, admin_user, tmp_path, what, field, value, toml, message
):
    obj = rows()[what]
    before = getattr(obj, field)
    unchanged = admin_client.post(URLS[what].format(obj.pk), form_data(obj, admin_user))
    assert unchanged.status_code == 302, unchanged.content.decode()[:2000]  # the form itself posts cleanly

    data = {**form_data(obj, admin_user), field: value}
    page = admin_client.post(URLS[what].format(obj.pk), data)

    assert page.status_code == 200  # the form again, with the error
    errors = page.context["adminform"].form.errors[field]
    assert any(message in e for e in errors), errors
    obj.refresh_from_db()
    assert getattr(obj, field) == before

    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(CommandError) as info:
        call_command("importconfig", str(path))
    assert f".{field}: {errors[0]}" in str(info.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_it_refuses_a_non_finite_number_in_the_admin(admin_client, admin_user, value):
    action = rows()["action"]
    page = admin_client.post(URLS["action"].format(action.pk), {**form_data(action, admin_user), "verify_delay": value})
    assert page.status_code == 200 and "verify_delay" in page.context["adminform"].form.errors
    action.refresh_from_db()
    assert action.verify_delay == 5.0


def test_it_refuses_a_nan_in_a_model_value_however_it_was_set():
    action = rows()["action"]
    action.verify_delay = float("nan")
    with pytest.raises(Exception, match="must be a finite number"):
        action.full_clean()


def test_it_refuses_a_nul_in_the_kind_settings_in_the_admin(admin_client, admin_user):
    service = rows()["service"]
    # The kind's keys are fields of their own (health.admin_forms): the NUL is refused on the `host` field.
    data = {**form_data(service, admin_user), "kind": "tcp", "host": "a\x00", "port": "1"}
    page = admin_client.post(URLS["service"].format(service.pk), data)
    assert page.status_code == 200
    assert page.context["adminform"].form.errors["host"] == ["must not contain a NUL character"]
    service.refresh_from_db()
    assert (service.kind, service.settings) == ("database", {})


def test_it_refuses_a_slug_with_a_trailing_newline_in_the_admin(admin_client, admin_user):
    service = rows()["service"]
    page = admin_client.post(URLS["service"].format(service.pk), {**form_data(service, admin_user), "name": "web2\n"})
    # Django's SlugField form strips the newline: what is stored is the slug itself, and the overview renders.
    if page.status_code == 302:
        assert Service.objects.filter(name="web2").exists()
        assert admin_client.get("/").status_code == 200
    else:
        assert "name" in page.context["adminform"].form.errors
