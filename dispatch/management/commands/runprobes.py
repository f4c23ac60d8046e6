from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dispatch import rounds
from health.models import Service
from health.probes.base import MISCONFIGURED
from health.runner import RoundResult, select_services

STATUS_MARK = {
    "up": "OK",
    "degraded": "WARN",
    "down": "DOWN",
    "misconfigured": "CONFIG",
    "paused": "PAUSED",
    "unknown": "?",
}


class Command(BaseCommand):
    help = "Run the probes now. Exit code: 0 healthy, 1 degraded, 2 down (Nagios-style)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="services to probe (default: all enabled)")
        parser.add_argument("--json", action="store_true", help="print JSON, the shape of /health/status")
        parser.add_argument("--no-recover", action="store_true", help="do not start auto-recovery")
        parser.add_argument("--loop", action="store_true", help="repeat until interrupted")
        parser.add_argument("--interval", type=float, default=60.0, help="seconds between rounds with --loop")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["interval"] <= 0:
            self.stderr.write("error: --interval must be positive")
            raise SystemExit(2)
        try:
            services = select_services(opts["names"])
        except Service.DoesNotExist as exc:
            self.stderr.write(f"error: {exc}")
            raise SystemExit(2) from None
        code = 0
        try:
            while True:
                result = self.round(services, recover=not opts["no_recover"])
                self.show(result, as_json=opts["json"])
                code = result.exit_code
                if not opts["loop"]:
                    break
                time.sleep(opts["interval"])
                services = select_services(opts["names"])
        except KeyboardInterrupt:
            pass
        raise SystemExit(code)

    def round(self, services: list[Service], *, recover: bool) -> rounds.Round:
        return rounds.run(services, recover=recover)

    def show(self, result: rounds.Round, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
            return
        self.stdout.write(self.table(result))
        for r in result.recovery:
            verdict = "skipped: " + r.reason if r.skipped else r.outcome
            self.stdout.write(f"recovery {r.service}: {verdict} {r.detail}".rstrip())

    @staticmethod
    def table(result: RoundResult) -> str:
        rows = [("SERVICE", "KIND", "STATUS", "LATENCY", "DETAIL")]
        for s in result.services:
            latency = "-" if s.last_latency_ms is None else f"{s.last_latency_ms:.0f} ms"
            status = f"{STATUS_MARK.get(s.status, s.status)} {s.status}"
            if s.status == "down":
                status += f" ({s.state_type})"
            # A misconfigured service's detail ends with its fix: shown whole, as the fix is the point.
            detail = s.last_detail if s.status == MISCONFIGURED else s.last_detail[:80]
            rows.append((s.name, s.kind, status, latency, detail))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=False)) + "  " + r[4] for r in rows]
        lines.append(f"overall: {result.status} ({len(result.services)} services, {result.duration_s:.2f} s)")
        return "\n".join(lines)
