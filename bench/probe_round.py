#!/usr/bin/env python
"""Probe-round throughput: N HTTP services on a loopback stub that answers after a fixed latency.

For each N it times one real round (probes run and results written, as `runprobes` does) and
reports it beside the ideal (N x latency / concurrency + a fixed start-up) and the sequential
baseline (the same probes one after another, as the old PowerShell monitor ran them), plus
peak RSS. A last row times a round in which one target hangs.

    python bench/probe_round.py                       # N = 100, 1000, 5000
    python bench/probe_round.py --n 1000 --concurrency 16,32,64,128
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python bench/probe_round.py
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _django import setup  # noqa: E402
from stub_server import StubProcess  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_services(n: int, url: str, timeout: float = 5.0) -> list:
    from health.models import ProbeResult, Service

    ProbeResult.objects.all().delete()
    Service.objects.all().delete()
    Service.objects.bulk_create(
        Service(name=f"svc-{i:05d}", kind="http", settings={"url": f"{url}/svc/{i}"}, timeout=timeout) for i in range(n)
    )
    return list(Service.objects.order_by("name"))


def timed_round(services: list) -> float:
    from health.runner import run_round

    start = time.perf_counter()
    run_round(services)
    return time.perf_counter() - start


def sequential(services: list) -> float:
    from health.runner import probe_once

    start = time.perf_counter()
    for s in services:
        probe_once(s)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="100,1000,5000", help="comma-separated service counts")
    parser.add_argument("--latency", type=float, default=0.05, help="stub answer latency, seconds")
    parser.add_argument("--concurrency", default="", help="comma-separated PROBE_CONCURRENCY values to sweep")
    parser.add_argument(
        "--sequential-max", type=int, default=1000, help="largest N whose sequential baseline is measured in full"
    )
    parser.add_argument("--hang-timeout", type=float, default=3.0, help="timeout of the hanging target")
    args = parser.parse_args()

    db = setup("probe-round")
    from django.conf import settings

    counts = [int(x) for x in args.n.split(",") if x]
    sweeps = [int(x) for x in args.concurrency.split(",") if x] or [settings.PROBE_CONCURRENCY]
    stub = StubProcess(args.latency).start()
    hang = StubProcess(3600).start()
    print(f"# probe round benchmark — database {db}, stub latency {args.latency * 1000:.0f} ms\n")
    print(
        "| N | concurrency | round (s) | ideal (s) | vs ideal | sequential (s) | speed-up "
        "| per service (ms) | peak RSS (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        # Fixed start-up: a round of one service (pool, transaction, bookkeeping).
        startup = min(timed_round(make_services(1, stub.url)) for _ in range(3)) - args.latency
        for conc in sweeps:
            settings.PROBE_CONCURRENCY = conc
            for n in counts:
                services = make_services(n, stub.url)
                timed_round(services[: min(n, conc)])  # warm the connection pool
                services = make_services(n, stub.url)
                wall = timed_round(services)
                ideal = n * args.latency / conc + startup
                if n <= args.sequential_max:
                    seq = sequential(services)
                    seq_note = f"{seq:.1f}"
                else:
                    sample = services[:200]
                    seq = sequential(sample) * n / len(sample)
                    seq_note = f"{seq:.1f} (extrapolated from 200)"
                print(
                    f"| {n} | {conc} | {wall:.2f} | {ideal:.2f} | {wall / ideal:.2f}x | {seq_note} | "
                    f"{seq / wall:.0f}x | {wall / n * 1000:.2f} | {peak_rss_mib():.0f} |",
                    flush=True,
                )
        # One target that hangs: the round should cost about that probe's timeout, no more.
        services = make_services(100, stub.url)
        from health.models import Service

        stuck = services[0]
        stuck.settings = {"url": f"{hang.url}/hang"}
        stuck.timeout = args.hang_timeout
        stuck.save()
        services = list(Service.objects.order_by("name"))
        wall = timed_round(services)
        print(
            f"\nhanging target: 100 services, one hangs with timeout {args.hang_timeout:g} s -> "
            f"round {wall:.2f} s (bound: its timeout)"
        )
        print(f"start-up (one-service round minus latency): {startup * 1000:.1f} ms")
    finally:
        stub.stop()
        hang.stop()


if __name__ == "__main__":
    main()
