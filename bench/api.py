#!/usr/bin/env python
"""API throughput and latency under gunicorn (2 workers) driven by wrk, each beside a bare Django view.

Creates a PostgreSQL database of its own (`bench_api`, dropped at the end unless --keep), 1,000
services and --rows ProbeResult rows generated inside PostgreSQL (generate_series: no Python in
the loop), plus open incidents and recovery attempts. Then, for each endpoint, runs wrk against
the bare view (`/bench/bare`, from bench/bench_urls.py only) and the endpoint back to back, and
prints requests/s and p50/p99. Query counts per request are taken in-process with Django's test
client, at 1,000 services and again with 500 more, to show whether they are constant.

    python bench/api.py                              # 1,000 services, 2,000,000 results
    python bench/api.py --rows 10000000              # the issue's full size
    python bench/api.py --duration 20 --connections 32
    python bench/api.py --status-cache 0,2           # /health/status and /metrics with STATUS_CACHE_SECONDS 0 and 2

With --status-cache, one gunicorn per value runs side by side (the same database, the same run) and the
status and metrics endpoints are measured against each in turn, alternating, so both figures see the
same outside load; other endpoints are measured once, on the first value's server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENDPOINTS = ["/health/live", "/health/status", "/metrics", "/"]
# What STATUS_CACHE_SECONDS changes (api.snapshot).
CACHED = {"/health/status", "/metrics"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(services: int, rows: int) -> float:
    """Services through the ORM (every field's default), results with one INSERT … SELECT generate_series."""
    from django.db import connection
    from django.utils import timezone

    from health.models import Incident, Service
    from recovery.models import RecoveryAction, RecoveryAttempt

    start = time.perf_counter()
    now = timezone.now()
    Service.objects.bulk_create(
        Service(
            name=f"svc-{i:05d}",
            kind="http",
            settings={"url": f"http://127.0.0.1:9/svc/{i}"},
            status="down" if i % 100 == 0 else "up",
            state_type="hard",
            last_checked_at=now,
            last_latency_ms=12.5,
            last_detail="HTTP 200",
        )
        for i in range(services)
    )
    per_service = max(1, rows // services)
    # Spread each service's results over the raw retention window (7 days), newest now.
    step_s = max(1, int(7 * 86400 / per_service))
    with connection.cursor() as cur:
        cur.execute("SET statement_timeout = 0")  # the portal's 30 s limit is for requests, not bulk loads
        cur.execute("ALTER TABLE health_proberesult SET UNLOGGED")  # generation only; set back below
        cur.execute(
            """
            INSERT INTO health_proberesult (service_id, checked_at, status, latency_ms, detail)
            SELECT s.id, now() - make_interval(secs => g * %s),
                   CASE WHEN g %% 97 = 0 THEN 'down' WHEN g %% 31 = 0 THEN 'degraded' ELSE 'up' END,
                   10 + (g %% 50), 'HTTP 200'
            FROM health_service s, generate_series(0, %s) AS g
            """,
            [step_s, per_service - 1],
        )
        cur.execute("ALTER TABLE health_proberesult SET LOGGED")
        cur.execute("ANALYZE")
    down = list(Service.objects.filter(status="down"))
    Incident.objects.bulk_create(Incident(service=s, opened_at=now, severity="critical", cause="down") for s in down)
    actions = RecoveryAction.objects.bulk_create(
        RecoveryAction(service=s, kind="command", settings={"argv": ["true"]}) for s in down
    )
    RecoveryAttempt.objects.bulk_create(
        RecoveryAttempt(service=a.service, action=a, trigger="auto", outcome="failed", started_at=now, finished_at=now)
        for a in actions
    )
    return time.perf_counter() - start


def query_counts(cookie_user) -> dict[str, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(cookie_user)
    counts = {}
    for path in ENDPOINTS:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(path)
        assert response.status_code in (200, 503), (path, response.status_code)
        counts[path] = len(ctx.captured_queries)
    return counts


def wrk(
    url: str, duration: int, connections: int, threads: int, cookie: str = "", script: str = ""
) -> dict[str, float]:
    # A long timeout: wrk's default (2 s) would drop the slow answers instead of timing them.
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "60s", "--latency", url]
    if cookie:
        argv[1:1] = ["-H", f"Cookie: {cookie}"]
    if script:  # a Lua script that writes each request (bench/pings.py: a different uuid each time)
        argv[1:1] = ["-s", script]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if not rps:
        raise RuntimeError(f"wrk got no answers from {url}:\n{out}")

    def pct(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": rps,
        "p50": pct("50"),
        "p99": pct("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "requests": total,
    }


def start_gunicorn(env: dict[str, str], cookie: str, label: str) -> tuple[subprocess.Popen, str]:
    """gunicorn with 2 workers (gunicorn.conf.py's threads), answering and warmed; returns it and its base URL."""
    port = free_port()
    log = open(f"/tmp/bench-api-gunicorn-{port}.log", "w")  # noqa: SIM115 — closed with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "opsportal.wsgi",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            # No worker recycling mid-measurement (gunicorn.conf.py recycles every ~2,000 requests).
            "--max-requests",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the workers answer once Django is imported, not when the port opens
        try:
            with urllib.request.urlopen(base + "/health/live", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    for path in ["/bench/bare", *ENDPOINTS] * 2:  # warm both workers (imports, connections, templates, snapshots)
        request = urllib.request.Request(base + path, headers={"Cookie": cookie})
        with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(request, timeout=300):
            pass
    print(f"# server {label}: {base} (log /tmp/bench-api-gunicorn-{port}.log)")
    return proc, base


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=2_000_000, help="ProbeResult rows to generate")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--database", default="bench_api")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="use the kept database as it is (no re-generation)")
    parser.add_argument("--endpoints", default=",".join(ENDPOINTS), help="comma-separated paths to measure")
    parser.add_argument("--repeat", type=int, default=1, help="alternate bare/endpoint runs; medians reported")
    parser.add_argument(
        "--status-cache",
        default="",
        help="comma-separated STATUS_CACHE_SECONDS values (e.g. 0,2): /health/status and /metrics under each, "
        "side by side in this run (default: the environment's setting, one server)",
    )
    args = parser.parse_args()
    cache_values = [v.strip() for v in args.status_cache.split(",") if v.strip()] or [None]
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    admin = f"{args.server}/postgres"
    if not args.reuse:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{args.database}"')
    key = secrets.token_urlsafe(50)
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.server}/{args.database}",
        "SECRET_KEY": key,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "DJANGO_SETTINGS_MODULE": "bench.bench_settings",
        "LOG_LEVEL": "WARNING",
        "STATIC_MANIFEST": "false",
    }
    os.environ.update(env)
    servers: list[subprocess.Popen] = []
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _django import setup

        db = setup("api")
        from django.conf import settings
        from django.contrib.auth import get_user_model

        from health.models import ProbeResult, Service

        # In-process query counts are of the computation itself, not of a snapshot read.
        settings.STATUS_CACHE_SECONDS = 0
        took = 0.0 if args.reuse else generate(args.services, args.rows)
        total = ProbeResult.objects.count()
        user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
        counts = query_counts(user)
        extra = Service.objects.bulk_create(
            Service(name=f"extra-{i:04d}", kind="tcp", settings={"host": "127.0.0.1", "port": 9}) for i in range(500)
        )
        counts_more = query_counts(user)
        Service.objects.filter(pk__in=[s.pk for s in extra]).delete()

        from django.test import Client

        client = Client()
        client.force_login(user)
        cookie = f"sessionid={client.cookies['sessionid'].value}"

        bases: dict[str | None, str] = {}
        for value in cache_values:
            server_env = env if value is None else {**env, "STATUS_CACHE_SECONDS": value}
            label = "environment default" if value is None else f"STATUS_CACHE_SECONDS={value}"
            proc, bases[value] = start_gunicorn(server_env, cookie, label)
            servers.append(proc)

        print(f"# API benchmark — {db}; {args.services} services, {total:,} ProbeResult rows (made in {took:.0f} s)")
        print(
            f"# gunicorn -w 2 (4 threads each, gunicorn.conf.py); wrk -t{args.threads} -c{args.connections} "
            f"-d{args.duration}s, no worker recycling, --repeat {args.repeat}; "
            f"load average before: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n"
        )
        print(
            "| endpoint | STATUS_CACHE_SECONDS | req/s | p50 (ms) | p99 (ms) | bare req/s | bare p50 | bare p99 | "
            f"vs bare | queries ({args.services} / {args.services + 500} services, computed) | non-2xx |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for path in args.endpoints.split(","):
            # The overview renders a card per service (seconds each at 1,000): fewer connections, longer run.
            conns, secs = (2, args.duration * 3) if path == "/" else (args.connections, args.duration)
            values = cache_values if path in CACHED else cache_values[:1]
            bares: dict[str | None, list] = {v: [] for v in values}
            subs: dict[str | None, list] = {v: [] for v in values}
            for _ in range(args.repeat):  # alternating, so a burst of outside load hits every side alike
                for v in values:
                    bares[v].append(wrk(bases[v] + "/bench/bare", secs, conns, min(args.threads, conns), cookie))
                    subs[v].append(wrk(bases[v] + path, secs, conns, min(args.threads, conns), cookie))
            for v in values:
                bare = {k: statistics.median(r[k] for r in bares[v]) for k in bares[v][0]}
                sub = {k: statistics.median(r[k] for r in subs[v]) for k in subs[v][0]}
                shown = "env" if v is None else v
                if path not in CACHED:
                    shown = "—"
                print(
                    f"| `{path}` (-c{conns} -d{secs}s) | {shown} | {sub['rps']:.0f} | {sub['p50']:.1f} | "
                    f"{sub['p99']:.1f} | {bare['rps']:.0f} | "
                    f"{bare['p50']:.1f} | {bare['p99']:.1f} | {sub['rps'] / bare['rps']:.2f}x | "
                    f"{counts[path]} / {counts_more[path]} | {sub['non2xx']} |",
                    flush=True,
                )
        print(f"# load average after: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        for proc in servers:
            stop(proc)
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
