from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from health.models import Service
from recovery.engine import recover_services
from recovery.results import RecoveryResult


class Command(BaseCommand):
    help = "Recover services now (default: those that need it). Exit code 0 when all succeeded or none needed it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="services to recover (default: those down)")
        parser.add_argument(
            "--force", action="store_true", help="bypass cooldown and escalation (never the one-at-a-time lock)"
        )

    def handle(self, *args: Any, **opts: Any) -> str:
        try:
            results = self.recover(opts["names"] or None, force=opts["force"])
        except Service.DoesNotExist as exc:
            self.stderr.write(f"error: {exc}")
            raise SystemExit(2) from None
        for line in self.lines(results):
            self.stdout.write(line)
        summary = self.summary(results)
        if any(not r.success for r in results):
            self.stdout.write(summary)
            raise SystemExit(1)
        return summary

    def recover(self, names: list[str] | None, *, force: bool) -> list[dict[str, Any]]:
        return recover_services(names, trigger="manual", via="manage.py recover", force=force)

    @staticmethod
    def lines(results: list[RecoveryResult]) -> list[str]:
        out = []
        for r in results:
            if r.skipped:
                out.append(f"{r.service}: {r.outcome} - {r.reason}")
            else:
                out.append(f"{r.service}: {r.outcome} ({r.action}) - {r.detail}")
        return out

    @staticmethod
    def summary(results: list[RecoveryResult]) -> str:
        if not results:
            return "nothing needs recovery"
        ok = sum(r.success for r in results)
        skipped = sum(r.skipped for r in results)
        return f"{len(results)} service(s): {ok} recovered, {len(results) - ok - skipped} failed, {skipped} skipped"
