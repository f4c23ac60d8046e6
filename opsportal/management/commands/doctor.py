from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from opsportal.doctor import Finding, run_checks


class Command(BaseCommand):
    help = "Check the installation (database, cache, broker, workers, secrets, clocks…) and say how to fix it."

    def handle(self, *args: Any, **opts: Any) -> str:
        findings = run_checks()
        for finding in findings:
            self.print_finding(finding)
        return self.summary(findings)

    def print_finding(self, finding: Finding) -> None:
        if finding.ok:
            label = self.style.WARNING("skip") if finding.skipped else self.style.SUCCESS("ok  ")
            self.stdout.write(f"{label}  {finding.check:<10}  {finding.detail}")
        else:
            self.stdout.write(f"{self.style.ERROR('FAIL')}  {finding.check:<10}  {finding.detail}")
            self.stdout.write(f"      {'':<10}  fix: {finding.fix}")

    def summary(self, findings: list[Finding]) -> str:
        failed = [f.check for f in findings if not f.ok]
        if failed:
            raise CommandError(f"doctor: {len(failed)} problem(s): {', '.join(failed)}")
        return f"doctor: all {len(findings)} checks passed"
