"""factory-boy factories for the health, recovery and tunnel models (other test files import them)."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from health.models import Incident, ProbeResult, Service
from health.permissions import ACTIONS
from recovery.models import RecoveryAction
from tunnels.models import Tunnel


class ServiceFactory(factory.django.DjangoModelFactory):
    """A `tcp` service by default; pass kind= and settings= for another kind."""

    class Meta:
        model = Service
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"svc-{n}")
    kind = "tcp"
    settings = factory.LazyFunction(lambda: {"host": "127.0.0.1", "port": 9})
    timeout = 2.0
    interval = 60
    critical = True
    failure_threshold = 2
    degraded_latency_ms = 2000


class ProbeResultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProbeResult

    service = factory.SubFactory(ServiceFactory)
    checked_at = factory.LazyFunction(timezone.now)
    status = "up"
    latency_ms = 1.0
    detail = "ok"


class IncidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Incident

    service = factory.SubFactory(ServiceFactory)
    opened_at = factory.LazyFunction(timezone.now)
    cause = "connect failed"


class RecoveryActionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RecoveryAction

    service = factory.SubFactory(ServiceFactory)
    position = factory.Sequence(lambda n: n)
    kind = "command"
    settings = factory.LazyFunction(lambda: {"argv": ["true"]})


class TunnelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tunnel
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tunnel-{n}")
    command = factory.LazyFunction(lambda: ["cloudflared", "tunnel", "run", "app"])


def grant(user: Any, *permissions: str) -> Any:
    """Give `user` these permissions ("app_label.codename"; default: every action's) and return it fresh
    (Django caches a user's permissions on the object)."""
    for name in permissions or ACTIONS:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return type(user).objects.get(pk=user.pk)


def make_service(name: str, **fields: Any) -> Service:
    """A saved service: a `tcp` one to a closed port unless `kind`/`settings` say otherwise."""
    fields.setdefault("kind", "tcp")
    fields.setdefault("settings", {"host": "127.0.0.1", "port": 9})
    return Service.objects.create(name=name, **fields)


def make_user(username: str = "ops", *, staff: bool = True, active: bool = True, perms: tuple[str, ...] = ()) -> Any:
    """A user with the given permissions (health.permissions) and no others."""
    # No password (an unusable one): these users log in by force_login or tokens, and hashing is slow.
    user = get_user_model().objects.create_user(username=username, password=None, is_staff=staff, is_active=active)
    return grant(user, *perms) if perms else user
