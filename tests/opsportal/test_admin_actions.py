"""Every admin action of every registered ModelAdmin needs a permission beyond "view" (issue 14.8).

A view-only staff user (the view permission of every registered model, nothing else) is offered no
action, and posting each one by name to its changelist changes nothing in the database. The walk reads
admin.site._registry, so an admin registered later (the portal's or a library's) is covered too.
"""

from __future__ import annotations

import uuid

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core import serializers
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_q.models import Task

from api.models import ApiToken
from health.models import Incident
from health.permissions import RUN_RECOVERY
from notify.models import Channel
from recovery.models import RecoveryAction, RecoveryState
from tests.api.api_support import make_service
from tests.factories import TunnelFactory, grant

pytestmark = pytest.mark.django_db

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
ACTIONS = [
    (model, name) for model, model_admin in REGISTRY for _func, name, _description in model_admin._get_base_actions()
]


def _world() -> None:
    """At least one row of each model that has an action, so every action has something to act on."""
    root = get_user_model().objects.create_superuser("root", password=None)
    svc = make_service("api", status="down")
    RecoveryAction.objects.create(service=svc, kind="command", settings={"argv": ["true"]}, verify_delay=0)
    RecoveryState.for_service(svc)
    Incident.objects.create(service=svc, cause="down")
    ApiToken.issue(root, name="root-ci")
    Channel.objects.create(name="ops", url="json://127.0.0.1:9/")
    TunnelFactory(name="main", command=["true"])
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(
            id=uuid.uuid4().hex,
            name=f"task-{success}",
            func="math.floor",
            args=(1.5,),
            started=now,
            stopped=now,
            success=success,
        )


def _view_only_user():
    user = get_user_model().objects.create_user("viewer", password=None, is_staff=True)
    for model in admin.site._registry:
        ct = ContentType.objects.get_for_model(model, for_concrete_model=False)
        user.user_permissions.add(Permission.objects.get(content_type=ct, codename=f"view_{model._meta.model_name}"))
    return type(user).objects.get(pk=user.pk)


def _snapshot() -> dict[str, str]:
    # Every row of every registered model, plus what an action may write on the side (events, deliveries, the queue).
    models = set(admin.site._registry) | {Task}
    for label in ("health.Event", "notify.Delivery", "recovery.RecoveryAttempt", "tunnels.TunnelEvent"):
        models.add(apps.get_model(label))
    if apps.is_installed("django_q"):
        models.add(apps.get_model("django_q", "OrmQ"))
    return {m._meta.label: serializers.serialize("json", m._base_manager.order_by("pk")) for m in models}


def test_it_walks_the_custom_actions_the_issue_names():
    names = {name for _model, name in ACTIONS}
    assert {"recover_now", "revoke_tokens", "send_test_notification", "check_now", "restart_now"} <= names


def test_it_offers_no_action_to_a_view_only_user():
    user = _view_only_user()
    request = RequestFactory().get("/admin/")
    request.user = user
    offered = {
        model._meta.label: sorted(model_admin.get_actions(request))
        for model, model_admin in REGISTRY
        if model_admin.get_actions(request)
    }
    assert offered == {}


@pytest.mark.parametrize(("model", "name"), ACTIONS, ids=[f"{m._meta.label}.{n}" for m, n in ACTIONS])
def test_it_refuses_each_action_to_a_view_only_user_and_changes_nothing(model, name):
    _world()
    client = Client()
    client.force_login(_view_only_user())
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    pks = [str(pk) for pk in model._base_manager.values_list("pk", flat=True)]
    before = _snapshot()
    response = client.post(url, {"action": name, "_selected_action": pks, "index": 0, "post": "yes"})
    assert response.status_code in (200, 302, 403), response.status_code
    assert _snapshot() == before


def test_it_offers_recover_now_with_the_run_recovery_permission():
    user = grant(_view_only_user(), RUN_RECOVERY)
    request = RequestFactory().get("/admin/")
    request.user = user
    assert "recover_now" in admin.site._registry[RecoveryState].get_actions(request)


def test_it_offers_every_custom_action_to_a_superuser():
    request = RequestFactory().get("/admin/")
    request.user = get_user_model().objects.create_superuser("root", password=None)
    for model, name in ACTIONS:
        assert name in admin.site._registry[model].get_actions(request), (model, name)


def test_it_runs_revoke_tokens_for_a_user_who_may_change_tokens():
    _world()
    user = grant(_view_only_user(), "api.change_apitoken")
    client = Client()
    client.force_login(user)
    token = ApiToken.objects.get()
    response = client.post(
        reverse("admin:api_apitoken_changelist"), {"action": "revoke_tokens", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    assert ApiToken.objects.get().revoked_at is not None
