#!/usr/bin/env python
"""Detection and repair times: kill -9 a watched process / the tunnel connector, and time what follows.

Runs the dispatcher (the code `opsportal-dispatch` runs inside qcluster: claim loop, probe rounds,
auto-recovery, tunnel watchdog) in this process against a throwaway database, and:

1. a `process` service (a sleeping Python child, recovered by `restart_process`) is killed with SIGKILL:
   time to the incident opened, to the recovery attempt started, to the service probing up again;
2. the fake cloudflared connector (tests/tunnels/fake_cloudflared.py) started by the watchdog is killed:
   time to `process_missing` recorded, to `restarted`, to the tunnel up again;
3. the notification of (1) reaches a loopback json:// webhook, with the outbox processed every
   --notify-every seconds (the `opsportal-notify` schedule runs each minute: 60 is production).

Detection is bounded by interval × failure_threshold; the defaults here are interval 10 s, threshold 2
(the product's defaults are 60 s and 2: scale the first column accordingly), tunnel check_interval 10 s.

    python bench/detect_repair.py
    python bench/detect_repair.py --interval 60 --check-interval 30 --notify-every 60   # product defaults
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _django import ROOT, setup, teardown  # noqa: E402

FAKE = ROOT / "tests" / "tunnels" / "fake_cloudflared.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webhook:
    """A loopback endpoint that notes when each JSON notification arrives."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 — http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    outer.received.append((time.time(), json.loads(body or b"{}")))
                except ValueError:
                    outer.received.append((time.time(), {"raw": body.decode(errors="replace")}))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait(predicate, timeout: float) -> float | None:  # noqa: ANN001
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return None


def ts(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=int, default=10, help="the process service's probe interval, s")
    parser.add_argument("--check-interval", type=int, default=10, help="the tunnel's check_interval, s")
    parser.add_argument("--notify-every", type=float, default=60, help="seconds between outbox runs")
    parser.add_argument("--timeout", type=float, default=240, help="give up on a scenario after this, s")
    args = parser.parse_args()

    os.environ.setdefault("AUTO_RECOVERY_ENABLED", "true")
    db = setup("detect-repair")
    from django.db import connections

    from dispatch.scheduler import Dispatcher
    from health.models import Incident, ProbeResult, Service
    from notify.models import Channel
    from notify.outbox import process_outbox
    from recovery.models import RecoveryAction, RecoveryAttempt
    from tunnels.models import Tunnel, TunnelEvent

    marker = f"opsportal-bench-victim-{os.getpid()}"
    argv = [sys.executable, "-c", f"import time  # {marker}\ntime.sleep(10**6)"]
    hook = Webhook()
    victim = subprocess.Popen(argv, start_new_session=True)
    marker2 = marker.replace("victim", "bystander")
    bystander = subprocess.Popen(
        [sys.executable, "-c", f"import time  # {marker2}\ntime.sleep(10**6)"], start_new_session=True
    )
    lone = Service.objects.create(
        name="bystander",
        kind="process",
        settings={"cmdline_contains": marker2},
        interval=args.interval,
        failure_threshold=2,
        critical=False,
    )
    port = free_port()
    svc = Service.objects.create(
        name="victim",
        kind="process",
        settings={"cmdline_contains": marker},
        interval=args.interval,
        failure_threshold=2,
        critical=True,
    )
    RecoveryAction.objects.create(
        service=svc, kind="restart_process", settings={"argv": argv, "settle_seconds": 1}, verify_delay=1, cooldown=30
    )
    Channel.objects.create(name="hook", url=f"json://127.0.0.1:{hook.port}/hook")
    tunnel = Tunnel.objects.create(
        name="edge",
        command=[sys.executable, str(FAKE), "--port", str(port)],
        process_match=f"{FAKE.name} --port {port}",
        ready_url=f"http://127.0.0.1:{port}/ready",
        check_interval=args.check_interval,
        settle_seconds=0.5,
        log_file=f"/tmp/bench-detect-repair-tunnel-{os.getpid()}.log",
    )

    stop = threading.Event()
    dispatcher = Dispatcher()

    def loop() -> None:  # one pass a second, as the task does; inline rounds keep the timing plain
        while not stop.is_set():
            try:
                dispatcher.pass_once()
            finally:
                connections.close_all()
            stop.wait(1)

    def notifier() -> None:
        while not stop.wait(args.notify_every):
            process_outbox()
            connections.close_all()

    threads = [threading.Thread(target=loop, daemon=True), threading.Thread(target=notifier, daemon=True)]
    for t in threads:
        t.start()
    rows: list[tuple[str, str, str]] = []
    try:
        # Steady state first: the service probed up, the connector started by the watchdog and up.
        assert wait(lambda: ProbeResult.objects.filter(service=svc, status="up").exists(), 60), "never up"
        assert wait(lambda: Tunnel.objects.get(pk=tunnel.pk).status == "up", 60), "tunnel never up"
        time.sleep(2)

        # 1. kill -9 the watched process: critical, so recovery starts on the first (SOFT) failure.
        t0 = time.time()
        since = datetime.fromtimestamp(t0).astimezone()
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        detected = wait(
            lambda: ts(
                ProbeResult.objects.filter(service=svc, status="down", checked_at__gt=since)
                .values_list("checked_at", flat=True)
                .last()
            ),
            args.timeout,
        )
        started = wait(
            lambda: ts(RecoveryAttempt.objects.filter(service=svc).values_list("started_at", flat=True).first()),
            args.timeout,
        )
        healthy = wait(
            lambda: ts(
                ProbeResult.objects.filter(service=svc, status="up", checked_at__gt=since)
                .values_list("checked_at", flat=True)
                .last()
            ),
            args.timeout,
        )
        incident = Incident.objects.filter(service=svc).first()

        def after(x: float | None) -> str:
            return f"{x - t0:.1f} s" if x else f"not within {args.timeout:g} s"

        rows.append(
            ("process killed (kill -9) → probed down", after(detected), f"≤ interval {args.interval} s + round")
        )
        rows.append(("→ recovery attempt started", after(started), "critical: on the first (SOFT) failure"))
        rows.append(("→ probing up again", after(healthy), "restart_process, settle 1 s, verify 1 s"))
        rows.append(
            ("→ incident opened", after(ts(incident.opened_at)) if incident else "none (repaired while SOFT)", "")
        )

        # 3. a non-critical service without recovery goes down: HARD after 2 probes, incident, notification.
        t0 = time.time()
        os.kill(bystander.pid, signal.SIGKILL)
        bystander.wait()
        opened = wait(
            lambda: ts(Incident.objects.filter(service=lone).values_list("opened_at", flat=True).first()),
            args.timeout,
        )
        notified = wait(
            lambda: next((at for at, body in hook.received if "bystander" in json.dumps(body)), None),
            args.timeout + args.notify_every,
        )
        rows.append(("service killed → incident opened (HARD down)", after(opened), f"interval {args.interval} s × 2"))
        rows.append(("→ notification at the json:// webhook", after(notified), f"outbox every {args.notify_every:g} s"))

        # 2. kill -9 the tunnel connector.
        pid = Tunnel.objects.get(pk=tunnel.pk).pid
        t0 = time.time()
        os.kill(pid, signal.SIGKILL)

        def event_at(kind: str) -> float | None:
            return ts(
                TunnelEvent.objects.filter(
                    tunnel=tunnel, kind=kind, created_at__gt=datetime.fromtimestamp(t0).astimezone()
                )
                .values_list("created_at", flat=True)
                .first()
            )

        missing = wait(lambda: event_at(TunnelEvent.Kind.PROCESS_MISSING), args.timeout)
        restarted = wait(lambda: event_at(TunnelEvent.Kind.RESTARTED), args.timeout)
        up = wait(lambda: event_at(TunnelEvent.Kind.CHECK_OK), args.timeout)
        rows.append(
            ("connector killed (kill -9) → process_missing", after(missing), f"check_interval {args.check_interval} s")
        )
        rows.append(("→ restarted (ready again)", after(restarted), "start + /ready"))
        rows.append(("→ next routine check ok", after(up), "one check_interval later"))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        from core import procs
        from tunnels import check

        for p in (
            procs.find_processes(cmdline_contains=marker)
            + procs.find_processes(cmdline_contains=marker2)
            + procs.find_processes(cmdline_contains=f"{FAKE.name} --port {port}")
        ):
            p.kill()
        check.reap_started()
        hook.stop()
    print(f"# detection and repair — database {db}; dispatcher in-process; load average {os.getloadavg()[0]:.1f}\n")
    print("| event | time after the kill | bound / note |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")
    teardown()


if __name__ == "__main__":
    main()
