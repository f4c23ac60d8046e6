#!/usr/bin/env python
"""Notification latency: a service's state change (a real probe round) → the alert at a loopback webhook.

Each trial turns a real `http` service down (its endpoint answers 500; failure_threshold 1) and runs one
probe round with the real runner (health.runner.run_round: probe, record, incident, outbox row, commit),
then up again; the time from the round's start to the json:// notification's arrival at a loopback
webhook is one sample ("down" and "up again" each). The send is the deliver-on-commit path
(notify.realtime): in process by default; with --cluster a real `manage.py qcluster` runs beside (its
workers take the send as a Django-Q2 task, its scheduler runs the minute schedule at the same time: any
duplicate would show). Otherwise no `process_outbox` runs in between: no minute schedule.

Baseline, computed in the same run: the old path sent only on the `opsportal-notify` schedule, once a
minute, so each event waited from its commit to the next minute's pass, then the same round and send.
State changes come at any second of the minute: sample i's commit is put at (i + ½)/n of the period
(evenly spread), and its wait to the pass is added to this run's own measured round + send of sample i.
A lower bound: Django-Q2's scheduler looks for due schedules only every ~30 s, which adds to it.

    python bench/notify_latency.py                  # N=50 trials, SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_notify python bench/notify_latency.py
    python bench/notify_latency.py --cluster        # the send queued to a real qcluster (ORM broker or Redis)
    python bench/notify_latency.py --trials 10 --json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _django import ROOT, setup, teardown  # noqa: E402

SCHEDULE_PERIOD_S = 60.0  # opsportal-notify: every minute
TARGET_P95_S = 5.0


class Receiver:
    """A loopback server: GET /svc is the probed service (500 while `failing`); POST /hook/… the webhook."""

    def __init__(self) -> None:
        self.failing = False
        self.received: list[tuple[float, dict]] = []
        self.arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 — http.server's naming
                self._answer(500 if outer.failing else 200)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.arrived:
                    outer.received.append((time.monotonic(), json.loads(body or b"{}")))
                    outer.arrived.notify_all()
                self._answer(200)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, title: str, since: int, timeout: float) -> float | None:
        """The arrival time of the first message titled `title` after the first `since` messages."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for at, message in self.received[since:]:
                    if message.get("title") == title:
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.arrived.wait(left)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 3),
        "p95": round(percentile(values, 95), 3),
        "max": round(max(values), 3),
    }


def start_cluster(alive) -> subprocess.Popen:  # noqa: ANN001
    """A real `manage.py qcluster` on the bench's database, once it is alive (its resident loop beats)."""
    env = {**os.environ, "AUTO_RECOVERY_ENABLED": "false", "DEBUG": "false"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = open(f"/tmp/bench-notify-qcluster-{os.getpid()}.log", "w")  # noqa: SIM115 — the child keeps it
    proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not alive():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"qcluster did not come up: see {log.name}")
        time.sleep(0.5)
    time.sleep(2)  # its workers are up too
    return proc


def line(s: dict[str, float]) -> str:
    return f"n={s['n']:3d}  p50 {s['p50']:6.3f} s  p95 {s['p95']:6.3f} s  max {s['max']:6.3f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=50, help="down/up cycles (each gives two samples)")
    parser.add_argument("--timeout", type=float, default=30, help="give up on one delivery after this, s")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--cluster", action="store_true", help="run a real qcluster: the send goes to it as a task")
    args = parser.parse_args()

    # One service turned down and up 2×N times in a row would be flapping (its alerts held): not measured here.
    os.environ["FLAP_DETECTION"] = "false"
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # the round's own warnings, 2×N times, are not the figures
    db = setup("notify-latency")
    from django.conf import settings
    from django.utils import timezone

    from dispatch.tasks import cluster_alive
    from health.models import Service
    from health.runner import run_round
    from notify.models import Channel, Delivery
    from notify.realtime import sender

    settings.AUTO_RECOVERY_ENABLED = False
    settings.FLAP_DETECTION = False
    receiver = Receiver()
    service = Service.objects.create(
        name="web",
        kind="http",
        settings={"url": f"http://127.0.0.1:{receiver.port}/svc"},
        failure_threshold=1,
        interval=86400,  # the bench's rounds probe it, not a qcluster's dispatcher
        next_due_at=timezone.now() + timezone.timedelta(days=1),
    )
    Channel.objects.create(name="hook", url=f"json://127.0.0.1:{receiver.port}/hook/bench")
    samples: dict[str, list[float]] = {"down": [], "up": []}
    sends: list[tuple[float, float]] = []  # (the round until its commit, commit → arrival)
    missed = 0
    cluster = start_cluster(cluster_alive) if args.cluster else None
    try:
        for _ in range(args.trials):
            for kind, failing, title in (("down", True, "web is down"), ("up", False, "web is up again")):
                receiver.failing = failing
                seen = len(receiver.received)
                service.refresh_from_db()
                started = time.monotonic()
                run_round([service])
                committed = time.monotonic()
                arrived = receiver.wait_for(title, seen, args.timeout)
                if arrived is None:
                    missed += 1
                    continue
                samples[kind].append(arrived - started)
                sends.append(((committed - started), (arrived - committed)))
            sender.wait_idle(args.timeout)
        if cluster is not None:
            time.sleep(SCHEDULE_PERIOD_S + 5)  # the cluster's minute schedule runs at least once more: no resend
        duplicates = len(receiver.received) - Delivery.objects.filter(status="sent").count()
    finally:
        receiver.stop()
        if cluster is not None:
            cluster.send_signal(signal.SIGTERM)  # the main process only: Django-Q2 stops its workers
            cluster.wait(60)
    both = samples["down"] + samples["up"]
    # The old path: each commit waits for the next minute's pass (commits spread evenly over the minute).
    baseline = [
        round_s + (SCHEDULE_PERIOD_S - (i + 0.5) / len(sends) * SCHEDULE_PERIOD_S) + send_s
        for i, (round_s, send_s) in enumerate(sends)
    ]
    figures = {
        "database": db,
        "path": "qcluster task (async_task)" if cluster is not None else "in process (sender thread)",
        "in_process_passes": sender.passes,
        "trials": args.trials,
        "missed": missed,
        "duplicates": duplicates,
        "on_commit": {"down": summary(samples["down"]), "up": summary(samples["up"]), "all": summary(both)},
        "minute_schedule_baseline": summary(baseline),
        "target_p95_s": TARGET_P95_S,
    }
    ok = not missed and not duplicates and figures["on_commit"]["all"]["p95"] <= TARGET_P95_S
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"notification latency, state change (probe round start) → webhook, {db}, {args.trials} trials")
        print(f"  sent by: {figures['path']}; in-process passes {sender.passes}")
        for name in ("down", "up", "all"):
            print(f"  on commit, {name:>4}:          {line(figures['on_commit'][name])}")
        print(f"  minute schedule (computed): {line(figures['minute_schedule_baseline'])}")
        print(f"  missed {missed}, duplicates {duplicates}; target p95 ≤ {TARGET_P95_S} s: {'PASS' if ok else 'FAIL'}")
    teardown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
