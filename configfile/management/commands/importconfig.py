from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from configfile.config import import_text
from core.envcheck import unset_in_document
from core.spec import ConfigError


class Command(BaseCommand):
    help = "Import services and tunnels from a TOML file (an upsert by name; all or nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="TOML file")
        parser.add_argument("--prune", action="store_true", help="delete what the file no longer names")
        parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")

    def handle(self, *args: Any, **opts: Any) -> str:
        path = Path(opts["file"])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: cannot read: {exc}") from None
        try:
            report = import_text(text, prune=opts["prune"], dry_run=opts["dry_run"])
        except ConfigError as exc:
            raise CommandError(f"{path}: {exc} (nothing was changed)") from None
        for warning in report.warnings + self.unset_warnings(text):
            self.stderr.write(self.style.WARNING(warning))
        lines = report.lines()
        for line in lines[:-1]:
            self.stdout.write(line)
        return ("dry run, nothing changed: " if opts["dry_run"] else "") + lines[-1]

    @staticmethod
    def unset_warnings(text: str) -> list[str]:
        """A warning per variable the file needs that is not set here: still imported (the variables may be
        set where the portal runs), but a probe that meets one is `misconfigured` until it is set."""
        return [unset.warning() for unset in unset_in_document(tomllib.loads(text))]
