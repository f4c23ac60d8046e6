"""factory-boy factories for the health, recovery and tunnel models (other test files import them)."""

from __future__ import annotations

import factory
from django.utils import timezone

from health.models import Incident, ProbeResult, Service
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
