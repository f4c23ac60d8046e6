#!/usr/bin/env python
"""Dashboard overview: one page of cards (DASHBOARD_CARDS_PER_PAGE) against every card on one page.

N services with `--hours` of results (4 an hour each), rolled up as the hourly schedule does, then
the overview requested through Django's test client (no network), best of 3, side by side:

    python bench/overview.py                     # 1,000 services, 48 hours
    python bench/overview.py --services 200 --hours 168
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("STATIC_MANIFEST", "false")

from _django import setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--per-page", default="1000,60", help="comma-separated DASHBOARD_CARDS_PER_PAGE values")
    args = parser.parse_args()
    db = setup("overview")

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from health import rollups
    from health.models import ProbeResult, Service

    now = timezone.now()
    Service.objects.bulk_create(
        Service(name=f"s{i:05d}", kind="tcp", settings={"host": "127.0.0.1", "port": 1}, status="up")
        for i in range(args.services)
    )
    ids = list(Service.objects.values_list("pk", flat=True))
    ProbeResult.objects.bulk_create(
        (
            ProbeResult(
                service_id=sid,
                checked_at=now - dt.timedelta(minutes=15 * k),
                status="up" if random.random() > 0.01 else "down",
                latency_ms=random.random() * 100,
            )
            for k in range(args.hours * 4)
            for sid in ids
        ),
        batch_size=10_000,
    )
    rollups.prune()  # what the hourly opsportal-prune schedule does
    client = Client()
    client.force_login(get_user_model().objects.create_user("bench", password=None, is_staff=True))
    print(f"# overview — {db}, {args.services} services, {ProbeResult.objects.count()} results\n")
    print("| cards per page | time (best of 3) | page size |")
    print("|---|---|---|")
    for per_page in (int(x) for x in args.per_page.split(",")):
        settings.DASHBOARD_CARDS_PER_PAGE = per_page
        best, size = float("inf"), 0
        for _ in range(3):
            start = time.perf_counter()
            response = client.get("/")
            best = min(best, time.perf_counter() - start)
            size = len(response.content)
        print(f"| {per_page} | {best * 1000:.0f} ms | {size / 1e6:.2f} MB |")


if __name__ == "__main__":
    main()
