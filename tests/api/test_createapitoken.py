from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from api.models import ApiToken
from health.permissions import RUN_RECOVERY
from tests.api.api_support import bearer, make_user

pytestmark = pytest.mark.django_db


def create(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("createapitoken", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_prints_the_token_once_and_stores_only_its_hash():
    make_user("ops")
    out, err = create("ops", "--name", "uptime-monitor")
    token = out.strip()
    assert token.startswith("ops_") and "\n" not in token
    row = ApiToken.objects.get()
    assert row.name == "uptime-monitor"
    assert row.user.username == "ops"
    assert row.token_hash == ApiToken.hash(token)
    assert token not in err
    assert "shown once" in err and row.prefix in err


def test_it_notes_when_the_user_is_not_staff():
    make_user("viewer", staff=False)
    _, err = create("viewer")
    assert "is not staff" in err


def test_it_refuses_an_unknown_user_and_creates_nothing():
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        create("ghost")
    assert not ApiToken.objects.exists()


def test_it_refuses_a_name_that_is_too_long():
    make_user("ops")
    with pytest.raises(CommandError, match="--name: at most 100 characters"):
        create("ops", "--name", "x" * 101)
    assert not ApiToken.objects.exists()


def test_it_creates_a_token_that_works_until_it_is_revoked(client):
    make_user("ops", perms=(RUN_RECOVERY,))
    token = create("ops")[0].strip()
    body = json.dumps({"services": []})
    response = client.post("/health/recover", body, "application/json", **bearer(token))
    assert response.status_code == 200
    assert response.json()["message"] == "No service needs recovery"
    ApiToken.objects.get().revoke()
    response = client.post("/health/recover", body, "application/json", **bearer(token))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or revoked API token"}


def test_it_notes_when_a_staff_user_cannot_run_recovery():
    make_user("reader")
    _, err = create("reader")
    assert f"lacks the permission {RUN_RECOVERY}" in err
    make_user("operator", perms=(RUN_RECOVERY,))
    _, err = create("operator")
    assert "lacks the permission" not in err
