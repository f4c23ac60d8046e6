from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from configfile.config import export_text


class Command(BaseCommand):
    help = "Print every service, recovery action and tunnel as TOML (importconfig reads it back)."

    def handle(self, *args: Any, **opts: Any) -> str:
        return export_text().rstrip("\n")
