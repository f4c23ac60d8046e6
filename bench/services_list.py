#!/usr/bin/env python
"""The overview (`/`) and the services list (`/services/`) at 1,000 services, beside a bare view.

The data of bench/overview.py (N services, `--hours` of results at 4 an hour, rolled up as the hourly
schedule does), with tags and 1 % of the services down; then each page is requested `--requests` times
in-process through Django's test client (no network, no server: the view, its queries and its template),
after 3 warm-up requests, and p50/p95 are printed with the queries a request made. `/bench/bare` (a view
returning `{}`, bench/bench_urls.py) is the yardstick: the same middleware and session, no work of its own.

Runs on SQLite (a throwaway file) and on PostgreSQL (a database `bench_list_<label>` on --server, created
and dropped here), each in a child process of its own:

    python bench/services_list.py                        # both, 1,000 services, 48 hours
    python bench/services_list.py --only sqlite --hours 168
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("STATIC_MANIFEST", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.bench_settings")

TARGET_P95_MS = 200
PAGES = [
    ("bare view", "/bench/bare"),
    ("overview", "/"),
    ("services list", "/services/"),
    ("services list, sort=uptime", "/services/?sort=uptime"),
    ("services list, tag + search", "/services/?tag=team-3&q=s00"),
]


def generate(services: int, hours: int) -> int:
    """bench/overview.py's data, with tags: services through the ORM, results in batches, then rolled up."""
    from django.utils import timezone

    from health import rollups
    from health.models import ProbeResult, Service

    random.seed(21)
    now = timezone.now()
    Service.objects.bulk_create(
        Service(
            name=f"s{i:05d}",
            kind="tcp",
            settings={"host": "127.0.0.1", "port": 1},
            interval=900,  # the 4 results an hour below
            status="down" if i % 100 == 0 else "up",
            last_latency_ms=random.random() * 100,
            last_checked_at=now,
            tags=[f"team-{i % 10}", *(["edge"] if i % 7 == 0 else [])],
        )
        for i in range(services)
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
            for k in range(hours * 4)
            for sid in ids
        ),
        batch_size=10_000,
    )
    rollups.prune()  # what the hourly opsportal-prune schedule does
    return ProbeResult.objects.count()


def measure(requests: int) -> list[dict]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.create_user("bench", password=None, is_staff=True))
    out = []
    for label, url in PAGES:
        for _ in range(3):
            assert client.get(url).status_code == 200, url
        queries: list[str] = []

        def counted(execute, sql, params, many, context, queries=queries):  # noqa: ANN001 (Django's hook)
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counted):
            client.get(url)
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, url
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95 + 0.5) - 1)]  # nearest rank
        out.append(
            {
                "page": label,
                "url": url,
                "p50": statistics.median(times),
                "p95": p95,
                "queries": len(queries),
                "bytes": len(response.content),
            }
        )
    return out


def child(args: argparse.Namespace) -> None:
    """One database: set up, generate, measure; print one JSON line."""
    from _django import setup, teardown

    db = setup("services-list")
    start = time.perf_counter()
    results = generate(args.services, args.hours)
    generated = time.perf_counter() - start
    rows = measure(args.requests)
    print(json.dumps({"db": db, "results": results, "generated_s": generated, "rows": rows}))
    teardown()


def run(database: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env["DEBUG"] = "false"  # as deployed (DEBUG also keeps every query in memory)
    admin = None
    if database == "postgresql":
        import psycopg

        name = f"bench_list_{args.label}"
        admin = f"{args.server}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = f"{args.server}/{name}"
    cmd = [sys.executable, __file__, "--child", "--services", str(args.services), "--hours", str(args.hours)]
    cmd += ["--requests", str(args.requests)]
    try:
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        sys.exit(f"{database}: the benchmark failed:\n{exc.stderr[-3000:]}")
    finally:
        if admin:
            import psycopg

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "bench_list_{args.label}" WITH (FORCE)')
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=48, help="hours of results, 4 an hour (default 48)")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page (default 50)")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database (default: both)")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--label", default=os.environ.get("ME", "run"), help="database name suffix")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    failed = False
    print(
        f"# overview and services list — {args.services} services, {args.hours} h of results, "
        f"{args.requests} requests a page (Django test client, in-process)\n"
    )
    print("| database | page | p50 | p95 | queries | page size |")
    print("|---|---|---|---|---|---|")
    for database in [args.only] if args.only else ["sqlite", "postgresql"]:
        out = run(database, args)
        for row in out["rows"]:
            slow = row["url"] != "/bench/bare" and row["p95"] >= TARGET_P95_MS
            failed |= slow
            mark = " ✖" if slow else ""
            print(
                f"| {database} ({out['results']:,} results) | {row['page']} (`{row['url']}`) | {row['p50']:.1f} ms "
                f"| {row['p95']:.1f} ms{mark} | {row['queries']} | {row['bytes'] / 1000:.0f} kB |"
            )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end: {load} on {os.cpu_count()} CPUs (figures scale with it)")
    print(f"target: p95 < {TARGET_P95_MS} ms for every page" + (" — NOT met (✖)" if failed else " — met"))


if __name__ == "__main__":
    main()
