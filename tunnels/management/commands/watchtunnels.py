"""`watchtunnels [NAME ...] [--once] [--interval S] [--log-file PATH]`: the tunnel watchdog in the foreground."""

from __future__ import annotations

import logging
import logging.handlers
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from tunnels import watchdog
from tunnels.check import CheckResult
from tunnels.models import Tunnel

IDLE_SLEEP_MAX = 1.0  # how often the loop looks for due tunnels when following each check_interval


class Command(BaseCommand):
    help = "Check tunnels (all enabled, or those named) and restart what is down; loops until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME")
        parser.add_argument("--once", action="store_true", help="check each tunnel once and exit")
        parser.add_argument(
            "--interval", type=float, default=None, help="seconds between checks (default: each tunnel's own)"
        )
        parser.add_argument("--log-file", default="", help="write the watchdog log here instead of LOG_DIR")

    def handle(self, *args: Any, **opts: Any) -> str:
        tunnels = self.tunnels(opts["names"])
        if opts["interval"] is not None and opts["interval"] <= 0:
            raise CommandError("--interval: must be a positive number of seconds")
        with self.log_to(opts["log_file"]):
            if opts["once"]:
                results = self.check_all(tunnels)
                return f"checked {len(results)} tunnel(s): " + ", ".join(f"{r.tunnel} {r.status}" for r in results)
            stop = threading.Event()
            self.stop_on_signals(stop)
            checks = self.loop(opts["names"] or None, opts["interval"], stop)
            return f"stopped after {checks} check(s)"

    def tunnels(self, names: list[str]) -> list[Tunnel]:
        if not names:
            return list(Tunnel.objects.filter(enabled=True))
        try:
            found = Tunnel.objects.named(names)
        except Tunnel.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        disabled = [t.name for t in found if not t.enabled]
        if disabled:
            raise CommandError("tunnel is disabled: " + ", ".join(disabled))
        return found

    def check_all(self, tunnels: list[Tunnel], *, quiet: bool = False) -> list[CheckResult]:
        results = []
        for tunnel in tunnels:
            result = watchdog.check_now(tunnel)
            if result is None:
                self.stdout.write(f"{tunnel.name}: being checked by another watchdog, skipped")
                continue
            results.append(result)
            self.report(result, quiet)
        return results

    def report(self, result: CheckResult, quiet: bool) -> None:
        # In the loop a routine check prints nothing: the rows and the log have it.
        if not (quiet and result.routine):
            self.stdout.write(result.summary())

    def loop(self, names: list[str] | None, interval: float | None, stop: threading.Event) -> int:
        """Check until `stop` is set: every `interval` seconds, or each tunnel at its own check_interval.

        Tunnels are read again every round, so one added or enabled while it runs is picked up.
        """
        checks = 0
        while not stop.is_set():
            if interval is not None:
                current = Tunnel.objects.filter(enabled=True)
                checks += len(self.check_all(list(current.filter(name__in=names) if names else current), quiet=True))
                stop.wait(interval)
                continue
            for result in watchdog.run_due(names=names):
                self.report(result, quiet=True)
                checks += 1
            stop.wait(self.idle_seconds(names))
        return checks

    @staticmethod
    def idle_seconds(names: list[str] | None) -> float:
        due = Tunnel.objects.filter(enabled=True, next_due_at__isnull=False)
        soonest = (
            (due.filter(name__in=names) if names else due)
            .order_by("next_due_at")
            .values_list("next_due_at", flat=True)
            .first()
        )
        if soonest is None:
            return IDLE_SLEEP_MAX
        return min(IDLE_SLEEP_MAX, max(0.05, (soonest - timezone.now()).total_seconds()))

    @staticmethod
    def stop_on_signals(stop: threading.Event) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    @contextmanager
    def log_to(self, path: str) -> Iterator[None]:
        """--log-file: the watchdog log goes to PATH (rotated like the default) for this run."""
        if not path:
            yield
            return
        logger = logging.getLogger("opsportal.tunnels")
        default = [h for h in logger.handlers if h.get_name() == "tunnel_file"]
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.TimedRotatingFileHandler(
                path, when="midnight", backupCount=settings.LOG_RETENTION_DAYS
            )
        except OSError as exc:
            raise CommandError(f"--log-file: cannot write {path}: {exc.strerror}") from None
        handler.setFormatter(default[0].formatter if default else logging.Formatter())
        for h in default:
            logger.removeHandler(h)
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            handler.close()
            for h in default:
                logger.addHandler(h)
