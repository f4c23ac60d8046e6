"""`manage.py createapitoken USERNAME [--name N]`: issue an API token and print it once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.models import ApiToken
from health.permissions import RUN_RECOVERY, allowed


class Command(BaseCommand):
    help = "Create an API token for a user and print it once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label to tell tokens apart, e.g. 'uptime-robot'")

    def handle(self, *args: Any, **options: Any) -> str:
        user = self.find_user(options["username"])
        name = self.check_name(options["name"])
        row, token = ApiToken.issue(user, name=name)
        self.stderr.write(self.notice(row))
        # stdout carries the token alone, so `TOKEN=$(manage.py createapitoken ops)` works.
        return token

    def find_user(self, username: str) -> Any:
        model = get_user_model()
        try:
            return model.objects.get(**{model.USERNAME_FIELD: username})
        except model.DoesNotExist:
            raise CommandError(f"no user named {username!r}; create one first (manage.py createsuperuser)") from None

    def check_name(self, name: str) -> str:
        name = name.strip()
        if len(name) > ApiToken._meta.get_field("name").max_length:
            raise CommandError("--name: at most 100 characters")
        return name

    def notice(self, row: ApiToken) -> str:
        lines = [f"Created API token {row.prefix}… for {row.user}; it is shown once, store it now:"]
        if not row.user.is_active:
            lines.insert(0, f"warning: {row.user} is inactive, so the token will be refused (401)")
        elif not row.user.is_staff:
            lines.insert(
                0, f"note: {row.user} is not staff: the token reads the API but POST /health/recover answers 403"
            )
        elif not allowed(row.user, RUN_RECOVERY):
            lines.insert(
                0,
                f"note: {row.user} lacks the permission {RUN_RECOVERY}: the token reads the API but"
                " POST /health/recover answers 403 (grant it in the admin)",
            )
        return "\n".join(lines)
