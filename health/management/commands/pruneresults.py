from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from health.rollups import PruneReport, prune


class Command(BaseCommand):
    help = (
        "Roll raw probe results older than RAW_RETENTION_DAYS up into hourly rows, then delete them in batches; "
        "delete rollups older than ROLLUP_RETENTION_DAYS. Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
        parser.add_argument("--batch", type=int, default=None, help="rows per DELETE (default PRUNE_BATCH_SIZE)")

    def handle(self, *args: Any, **opts: Any) -> str:
        if opts["batch"] is not None and opts["batch"] < 1:
            raise CommandError("--batch must be a positive integer")
        return self.run(dry_run=opts["dry_run"], batch=opts["batch"]).summary()

    def run(self, *, dry_run: bool = False, batch: int | None = None) -> PruneReport:
        return prune(dry_run=dry_run, batch=batch)
