from __future__ import annotations

import io
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from health.models import Service


class Command(BaseCommand):
    help = "First-run set-up: migrate, cache table, static files, the demo config, an admin user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", default=str(Path(settings.BASE_DIR) / "examples" / "demo.toml"))
        parser.add_argument("--admin", default="admin", help="username of the admin user to create")

    def handle(self, *args: Any, **opts: Any) -> str:
        call_command("migrate", verbosity=0)
        call_command("createcachetable", verbosity=0)
        call_command("collectstatic", verbosity=0, interactive=False)
        if not Service.objects.exists():
            # Through importconfig, so a bad file is a one-line error, not a traceback.
            summary = call_command("importconfig", opts["config"], stdout=io.StringIO())
            self.stdout.write(f"imported {opts['config']}: {summary}")
        User = get_user_model()
        if not User.objects.filter(is_superuser=True).exists():
            # A generated password, shown once: there is no default credential anywhere.
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(opts["admin"], "", password)
            self.stdout.write(f"admin user: {opts['admin']}  password: {password}  (shown once; keep it)")
        return "set-up done"
