"""A stand-in for cloudflared in tests: serves the metrics server's `/ready` on a loopback port.

    python fake_cloudflared.py --port P [--not-ready-file F] [--unready-after S]
                               [--ready-delay S] [--never-ready] [--exit-at-once] [--connections N]

`/ready` answers 200 `{"status": 200, "readyConnections": N}` like cloudflared holding N edge
connections, and 503 with `readyConnections: 0` while F exists (empty, or holding this process's
pid), after S seconds, before `--ready-delay` has passed, or always with `--never-ready`.
`--exit-at-once` exits with status 1 before serving anything (a crash loop). SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--not-ready-file", default="")
    parser.add_argument("--unready-after", type=float, default=0.0)
    parser.add_argument("--ready-delay", type=float, default=0.0)
    parser.add_argument("--never-ready", action="store_true")
    parser.add_argument("--exit-at-once", action="store_true")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--token", default="", help="ignored; stands in for cloudflared's --token")
    return parser.parse_args(argv)


def _names_me(path: str) -> bool:
    # The control file makes this connector unready when it is empty or holds this pid, so a test
    # can fail the running connector while the one the watchdog starts next is healthy.
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return False
    return text in ("", str(os.getpid()))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    print(f"INF Starting fake tunnel pid={os.getpid()} metrics=127.0.0.1:{args.port}", flush=True)
    if args.exit_at_once:
        print("ERR failed to connect to the edge; exiting", flush=True)
        return 1
    started = time.monotonic()

    def ready() -> bool:
        age = time.monotonic() - started
        if args.never_ready or age < args.ready_delay:
            return False
        if args.unready_after and age >= args.unready_after:
            return False
        return not (args.not_ready_file and _names_me(args.not_ready_file))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path.split("?")[0] != "/ready":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            ok = ready()
            status = 200 if ok else 503
            body = json.dumps({"status": status, "readyConnections": args.connections if ok else 0}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = HTTPServer(("127.0.0.1", args.port), Handler)

    def on_term(signum: int, frame: object) -> None:
        print("INF Received SIGTERM, shutting down", flush=True)
        server.server_close()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    print("INF Registered tunnel connection", flush=True)
    server.serve_forever(poll_interval=0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
