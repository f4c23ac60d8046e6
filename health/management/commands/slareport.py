from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from health.sla import FORMATS, SlaError, report


class Command(BaseCommand):
    help = (
        "The SLA report of a calendar month (in TIME_ZONE) per service: availability, probed time, downtime, "
        "maintenance, dependency time (a parent's incident) and unknown time, with the method stated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", required=True, help="YYYY-MM, e.g. 2026-11")
        parser.add_argument(
            "--service", nargs="+", action="extend", default=[], metavar="NAME", help="only these services"
        )
        parser.add_argument("--format", default="text", help="text (default), csv or json")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["format"] not in FORMATS:  # said before any query, with the choices
            raise CommandError(f"--format must be one of {', '.join(FORMATS)}, got {opts['format']!r}")
        try:
            result = report(opts["month"], opts["service"])
        except SlaError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(result.render(opts["format"]), ending="")
