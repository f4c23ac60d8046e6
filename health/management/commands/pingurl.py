from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from health.models import Service
from health.pings import ping_url


class Command(BaseCommand):
    help = "Print the ping URL of a push service (PUBLIC_URL + /ping/<uuid>), for its cron line or client."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the push service's name")

    def handle(self, *args: Any, **opts: Any) -> str:
        service = Service.objects.filter(name=opts["name"]).first()
        if service is None:
            raise CommandError(f"unknown service: {opts['name']}")
        if service.kind != "push":
            raise CommandError(f"{service.name} is a {service.kind} service, not push: it takes no pings")
        return ping_url(service.ping_uuid)
