#!/usr/bin/env python
"""Heartbeat pings per second through gunicorn, beside a bare Django view, on SQLite and PostgreSQL.

For each database engine (a throwaway SQLite file, or a PostgreSQL database of its own, `bench_pings`,
dropped at the end) and each cache the rate limit counts in (the database cache, the default; Redis, with
REDIS_URL): --services `push` services and --history pings already stored (so a ping's cost is shown not
to grow with history), gunicorn with 2 workers as deployed (bench/bench_settings.py: the product plus
`/bench/bare`), then wrk against `/bench/bare` and `GET /ping/<uuid>` in turn (--repeat times, alternating;
medians). A Lua script gives each request the next service's uuid, so no uuid passes the 5/s rate limit
unless the portal answers faster than 5 × --services a second. After each run the new Ping rows are counted
against the 200s wrk saw: nothing answered OK is lost.

    python bench/pings.py                                  # both engines, both caches
    python bench/pings.py --engines sqlite --caches db --duration 5
    python bench/pings.py --history 1000000                # a long history

Target (the heartbeats issue): pings ≥ 0.5× the bare view's requests per second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import start_gunicorn, stop, wrk  # noqa: E402 - after the path above

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
DATABASE = "bench_pings"
REDIS_URL = "redis://127.0.0.1:6379/13"

LUA = """
local uuids = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/ping/" .. uuids[(i %% #uuids) + 1])
end
"""


def seed(services: int, history: int) -> list[str]:
    """`services` push services and `history` pings spread over them; returns their uuids."""
    from django.utils import timezone

    from health.models import Ping, Service

    now = timezone.now()
    rows = Service.objects.bulk_create(
        Service(name=f"job-{i:05d}", kind="push", settings={"period": 3600, "grace": 60}, status="up")
        for i in range(services)
    )
    uuids = [str(s.ping_uuid) for s in rows]
    batch = 5000
    for start in range(0, history, batch):
        Ping.objects.bulk_create(
            Ping(service_id=uuids[i % services], kind="success", received_at=now - dt.timedelta(seconds=i))
            for i in range(start, min(history, start + batch))
        )
    return uuids


def one_engine(args: argparse.Namespace, engine: str) -> list[dict]:
    """Measure one engine (in this process: Django is set up once per process)."""
    tmp = Path(tempfile.mkdtemp(prefix="opsportal-bench-pings-"))
    tmp.chmod(0o700)
    if engine == "postgres":
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        url = f"{PG_SERVER}/{DATABASE}"
    else:
        url = f"sqlite:///{tmp}/bench.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "OPSPORTAL_VAR_DIR": str(tmp),
        "LOG_DIR": str(tmp / "logs"),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "DJANGO_SETTINGS_MODULE": "bench.bench_settings",
        "LOG_LEVEL": "WARNING",
        "STATIC_MANIFEST": "false",
    }
    env.pop("REDIS_URL", None)
    os.environ.update(env)
    rows: list[dict] = []
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from health.models import Ping

        call_command("migrate", verbosity=0)
        call_command("createcachetable", verbosity=0)
        uuids = seed(args.services, args.history)
        script = tmp / "pings.lua"
        script.write_text(LUA % ", ".join(json.dumps(u) for u in uuids))
        for cache in args.caches:
            server_env = {**env, "REDIS_URL": REDIS_URL} if cache == "redis" else env
            proc, base = start_gunicorn(server_env, "", f"{engine}, {cache} cache")
            try:
                bares, pings = [], []
                for _ in range(args.repeat):
                    bares.append(wrk(base + "/bench/bare", args.duration, args.connections, args.threads))
                    before = Ping.objects.count()
                    run = wrk(base + "/", args.duration, args.connections, args.threads, script=str(script))
                    run["stored"] = Ping.objects.count() - before
                    pings.append(run)
            finally:
                stop(proc)
            median = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
            rows.append(
                {
                    "engine": f"{connection.vendor}",
                    "cache": cache,
                    "bare_rps": median(bares, "rps"),
                    "bare_p99": median(bares, "p99"),
                    "rps": median(pings, "rps"),
                    "p50": median(pings, "p50"),
                    "p99": median(pings, "p99"),
                    "non2xx": sum(r["non2xx"] for r in pings),
                    "answered_ok": sum(r["requests"] - r["non2xx"] for r in pings),
                    "stored": sum(r["stored"] for r in pings),
                }
            )
    finally:
        from django.db import connections

        connections.close_all()
        if engine == "postgres":
            import psycopg

            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--caches", default="db,redis", help="where the rate limit counts: db (default), redis")
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--history", type=int, default=200_000, help="pings already stored")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one engine, print JSON rows
    args = parser.parse_args()
    args.caches = [c.strip() for c in args.caches.split(",") if c.strip()]
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    if args.one:
        print(json.dumps(one_engine(args, args.one)))
        return
    print(
        f"# pings through gunicorn -w 2 (gunicorn.conf.py threads), wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s, --repeat {args.repeat} (medians); {args.services} push services, "
        f"{args.history:,} pings stored before; load average before: "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n"
    )
    print(
        "| database | rate-limit cache | pings/s | p50 (ms) | p99 (ms) | bare req/s | bare p99 | vs bare "
        "| non-2xx | answered OK / stored |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        argv = [sys.executable, __file__, "--one", engine, *sys.argv[1:]]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            why = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
            print(f"| {engine} | failed: {why} |")
            continue
        for r in json.loads(out.stdout.strip().splitlines()[-1]):
            print(
                f"| {r['engine']} | {r['cache']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                f"{r['bare_rps']:.0f} | {r['bare_p99']:.1f} | {r['rps'] / r['bare_rps']:.2f}x | {r['non2xx']} | "
                f"{r['answered_ok']:,} / {r['stored']:,} |",
                flush=True,
            )
    print(f"\n# load average after: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
