#!/usr/bin/env python
"""Scheduler cadence: N HTTP services at a fixed interval under one real `manage.py qcluster`.

Runs the qcluster for --minutes against a loopback stub (50 ms answers), samples the CPU and RSS of its
whole process tree with psutil, stops it with SIGTERM, and then reads every ProbeResult: per service, the
k-th result should land at (first result + k × interval). It reports the cadence error (p50/p99/max of
|actual − slot|), slots missed, overlaps (two results in one slot), the start lag (qcluster start to first
result, mostly Django-Q2's scheduler look-up) and the cluster's CPU and memory.

    python bench/scheduler.py                          # 300 services, 60 s, 3 minutes (SQLite)
    python bench/scheduler.py --services 1000 --minutes 10     # the issue's full size
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sched python bench/scheduler.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _django import ROOT, setup, teardown  # noqa: E402
from stub_server import StubProcess  # noqa: E402


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def tree(proc: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return [proc, *proc.children(recursive=True)]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--interval", type=int, default=60, help="each service's interval, seconds")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long the qcluster runs")
    parser.add_argument("--latency", type=float, default=0.05, help="stub answer latency, seconds")
    args = parser.parse_args()

    db = setup("scheduler")
    from health.models import ProbeResult, Service

    stub = StubProcess(args.latency).start()
    Service.objects.bulk_create(
        Service(name=f"svc-{i:05d}", kind="http", settings={"url": f"{stub.url}/svc/{i}"}, interval=args.interval)
        for i in range(args.services)
    )
    env = {
        **os.environ,
        "AUTO_RECOVERY_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log_path = Path(f"/tmp/bench-scheduler-qcluster-{os.getpid()}.log")
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    started = time.time()
    main_proc = psutil.Process(proc.pid)
    cpu_seen: dict[int, float] = {}
    peak_rss = 0
    samples_rss: list[float] = []
    try:
        while time.time() - started < args.minutes * 60:
            rss = 0
            for p in tree(main_proc):
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    cpu_seen[p.pid] = t.user + t.system  # last reading per pid: its CPU so far
                    rss += p.memory_info().rss
            peak_rss = max(peak_rss, rss)
            samples_rss.append(rss)
            time.sleep(1)
    finally:
        wall = time.time() - started
        proc.send_signal(signal.SIGTERM)  # the main process only: Django-Q2 stops its workers
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            for p in tree(main_proc)[::-1]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            proc.wait(10)
        stub.stop()

    rows = ProbeResult.objects.order_by("checked_at").values_list("service_id", "checked_at")
    by_service: dict[int, list[float]] = {}
    for sid, at in rows:
        by_service.setdefault(sid, []).append(at.timestamp())
    errors: list[float] = []
    missed = overlaps = 0
    first_results = []
    end = started + wall
    for times in by_service.values():
        first_results.append(times[0] - started)
        slots: dict[int, int] = {}
        for t in times:
            k = round((t - times[0]) / args.interval)
            slots[k] = slots.get(k, 0) + 1
            errors.append(abs(t - (times[0] + k * args.interval)))
        overlaps += sum(n - 1 for n in slots.values())
        expected = int((end - 2 - times[0]) // args.interval) + 1  # slots that fell due before the stop
        missed += max(0, expected - len(slots))
    never = args.services - len(by_service)
    cpu_s = sum(cpu_seen.values())
    print(f"# scheduler benchmark — database {db}; {args.services} services every {args.interval} s, ")
    print(f"# one qcluster for {wall / 60:.1f} min; load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| metric | value |")
    print("|---|---|")
    print(f"| probe results | {sum(len(t) for t in by_service.values())} |")
    print(f"| services never probed | {never} |")
    print(
        f"| start lag (qcluster start → first result), min / max | {min(first_results, default=0):.1f} s / "
        f"{max(first_results, default=0):.1f} s |"
    )
    print(
        f"| cadence error p50 / p99 / max | {pct(errors, 50):.2f} s / {pct(errors, 99):.2f} s / "
        f"{max(errors, default=0):.2f} s |"
    )
    print(f"| slots missed | {missed} |")
    print(f"| overlaps (two results in one slot) | {overlaps} |")
    print(f"| cluster CPU (all processes) | {cpu_s:.1f} s in {wall:.0f} s = {cpu_s / wall * 100:.1f} % of one core |")
    print(
        f"| cluster RSS (all processes) peak / median | {peak_rss / 2**20:.0f} MiB / "
        f"{statistics.median(samples_rss) / 2**20:.0f} MiB |"
    )
    print(f"\nqcluster log: {log_path}")
    teardown()


if __name__ == "__main__":
    main()
