"""Staff status lets a user read; each action needs its Django permission, by session and by token (issue 14.7).

Every action of the dashboard and the API: staff without the permission -> 403 naming it and nothing
changes; with the permission (or as a superuser) -> it runs.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from api.models import ApiToken
from health.models import Incident, ProbeResult, Service
from health.permissions import ACKNOWLEDGE_INCIDENT, PAUSE_SERVICE, PROBE_NOW, RUN_RECOVERY
from recovery.models import RecoveryAction, RecoveryAttempt
from tests.api.api_support import bearer, make_service, make_user

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Action:
    name: str
    permission: str
    method: str
    url: str
    data: dict[str, Any]
    done: Callable[[], bool]  # did the action take effect?


def _world() -> None:
    svc = make_service("api", status="down")
    RecoveryAction.objects.create(
        service=svc, kind="command", settings={"argv": [sys.executable, "-c", "pass"]}, verify_delay=0, timeout=10
    )
    Incident.objects.create(pk=7, service=svc, cause="connection refused")


DASHBOARD = [
    Action("probe", PROBE_NOW, "POST", "/services/api/probe/", {}, lambda: ProbeResult.objects.exists()),
    Action(
        "pause",
        PAUSE_SERVICE,
        "POST",
        "/services/api/pause/",
        {"action": "pause"},
        lambda: Service.objects.get(name="api").paused,
    ),
    Action(
        "acknowledge",
        ACKNOWLEDGE_INCIDENT,
        "POST",
        "/incidents/7/acknowledge/",
        {},
        lambda: Incident.objects.get(pk=7).acknowledged_at is not None,
    ),
    Action(
        "recover",
        RUN_RECOVERY,
        "POST",
        "/services/api/recover/",
        {"force": "on"},
        lambda: recovery_ran("api"),
    ),
]
# The dashboard's recovery runs in a thread of this process (dispatch.manual), which reads committed rows only.
DASHBOARD_PARAMS = [
    pytest.param(a, marks=pytest.mark.django_db(transaction=True)) if a.name == "recover" else a for a in DASHBOARD
]
API_RECOVER = Action(
    "api-recover",
    RUN_RECOVERY,
    "POST",
    "/health/recover",
    {"services": ["api"], "force": True},
    lambda: RecoveryAttempt.objects.exists(),
)


def recovery_ran(name: str) -> bool:
    """An attempt was recorded, once the dashboard's background recovery thread (if one started) ended."""
    for thread in threading.enumerate():
        if thread.name == f"recover-{name}":
            thread.join(timeout=15)
    return RecoveryAttempt.objects.exists()


def session(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def dashboard_post(client: Client, action: Action):
    return client.post(action.url, action.data)


def api_post(client: Client, action: Action, **headers: str):
    return client.generic("POST", action.url, json.dumps(action.data), content_type="application/json", **headers)


@pytest.mark.parametrize("action", DASHBOARD_PARAMS, ids=lambda a: a.name)
def test_it_refuses_a_dashboard_action_to_staff_without_its_permission(action):
    _world()
    client = session(make_user("staffer"))
    response = dashboard_post(client, action)
    assert response.status_code == 403
    assert f"permission required: {action.permission}" in response.content.decode()
    assert not action.done()


@pytest.mark.parametrize("action", DASHBOARD_PARAMS, ids=lambda a: a.name)
def test_it_runs_a_dashboard_action_for_staff_with_its_permission(action):
    _world()
    client = session(make_user("operator", perms=(action.permission,)))
    response = dashboard_post(client, action)
    assert response.status_code == 302, response.content[:300]
    assert action.done()


@pytest.mark.parametrize("action", DASHBOARD_PARAMS, ids=lambda a: a.name)
def test_it_runs_every_dashboard_action_for_a_superuser(action):
    _world()
    root = get_user_model().objects.create_superuser("root", password=None)
    assert dashboard_post(session(root), action).status_code == 302
    assert action.done()


@pytest.mark.parametrize("action", DASHBOARD_PARAMS, ids=lambda a: a.name)
def test_it_does_not_let_another_permission_stand_in(action):
    _world()
    others = tuple(a.permission for a in DASHBOARD if a.permission != action.permission)
    response = dashboard_post(session(make_user("other", perms=others)), action)
    assert response.status_code == 403
    assert not action.done()


def test_it_refuses_the_recover_confirmation_page_without_the_permission():
    _world()
    response = session(make_user("staffer")).get("/services/api/recover/")
    assert response.status_code == 403
    assert f"permission required: {RUN_RECOVERY}" in response.content.decode()


def test_it_still_lets_staff_without_permissions_read_the_dashboard():
    _world()
    client = session(make_user("reader"))
    for url in ("/", "/services/api/", "/incidents/", "/recovery/"):
        assert client.get(url).status_code == 200, url


def test_it_hides_the_buttons_a_user_may_not_use():
    _world()
    page = session(make_user("reader")).get("/services/api/").content.decode()
    for url in ("/services/api/probe/", "/services/api/pause/", "/services/api/recover/"):
        assert f'action="{url}"' not in page and f'href="{url}"' not in page, url
    page = session(make_user("operator", perms=(PROBE_NOW, PAUSE_SERVICE, RUN_RECOVERY))).get("/services/api/")
    shown = page.content.decode()
    assert "/services/api/probe/" in shown and "/services/api/pause/" in shown and "/services/api/recover/" in shown


def _token(perms: tuple[str, ...]) -> str:
    return ApiToken.issue(make_user("tokenuser", perms=perms), name="ci")[1]


def test_it_refuses_api_recovery_by_token_to_staff_without_the_permission(client):
    _world()
    response = api_post(client, API_RECOVER, **bearer(_token(())))
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": f"permission required: {RUN_RECOVERY}"}
    assert not API_RECOVER.done()


def test_it_refuses_api_recovery_by_session_to_staff_without_the_permission():
    _world()
    response = api_post(session(make_user("staffer")), API_RECOVER)
    assert response.status_code == 403
    assert response.json() == {"error": f"permission required: {RUN_RECOVERY}"}
    assert not API_RECOVER.done()


def test_it_runs_api_recovery_by_token_with_the_permission(client):
    _world()
    response = api_post(client, API_RECOVER, **bearer(_token((RUN_RECOVERY,))))
    assert response.status_code == 200, response.content
    assert API_RECOVER.done()


def test_it_runs_api_recovery_by_session_with_the_permission():
    _world()
    response = api_post(session(make_user("operator", perms=(RUN_RECOVERY,))), API_RECOVER)
    assert response.status_code == 200, response.content
    assert API_RECOVER.done()


def test_it_runs_api_recovery_by_a_superusers_token(client):
    _world()
    root = get_user_model().objects.create_superuser("root", password=None)
    _, token = ApiToken.issue(root, name="root")
    assert api_post(client, API_RECOVER, **bearer(token)).status_code == 200
    assert API_RECOVER.done()


def test_it_still_lets_a_token_without_permissions_read(client, settings):
    settings.HEALTH_PUBLIC = False
    _world()
    token = _token(())
    for url in ("/health/status", "/health/incidents", "/health/recovery-stats", "/health/uptime"):
        assert client.get(url, **bearer(token)).status_code in (200, 503), url
