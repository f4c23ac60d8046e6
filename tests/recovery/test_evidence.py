"""Evidence before repair (recovery.evidence): real processes, real files, the Docker stand-in, through the engine."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import psutil
import pytest
from django.utils import timezone

from core.mask import MASK
from health.models import ProbeResult, Service
from recovery import evidence
from recovery.actions.restart_tunnel import RestartTunnelAction
from recovery.engine import recover_services
from recovery.models import RecoveryAttempt
from tests.dashboard.dashboard_fixtures import staff_client
from tests.health.docker_api import Container, DockerApi
from tests.recovery.conftest import PY
from tests.servers import wait_for
from tunnels.models import Tunnel

__all__ = ["staff_client"]

pytestmark = pytest.mark.django_db

DB_SECRET = "hunter2-evidence-7f3a"
DSN_SECRET = "dsn-secret-4711"
ARG_SECRET = "cmd-secret-99x"

# A small server: listens on a free loopback port, starts a child, writes 300 lines and two secrets to its log.
SERVER = r"""
import os, socket, subprocess, sys, time
log_path, marker = sys.argv[1], sys.argv[2]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10**6)", marker + "-child"])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
with open(log_path, "a") as log:
    for i in range(300):
        log.write(f"request {i} served\n")
    log.write("connecting with password " + os.environ["APP_DB_PASSWORD"] + "\n")
    log.write("database postgres://app:DSN@127.0.0.1:5432/app unreachable\n".replace("DSN", os.environ["APP_DSN_PW"]))
    log.write(f"listening on {s.getsockname()[1]} child {child.pid}\n")
    log.flush()
while True:
    s.accept()[0].close()
"""


@pytest.fixture
def marker() -> str:
    return f"opsportal-evidence-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The portal's environment holds the secrets (a *_PASSWORD variable); the server gets them too."""
    monkeypatch.setenv("APP_DB_PASSWORD", DB_SECRET)
    monkeypatch.setenv("APP_DSN_PW", "dsn-of-the-restarted-one")
    return {**os.environ, "APP_DB_PASSWORD": DB_SECRET, "APP_DSN_PW": DSN_SECRET}


def server_argv(tmp_path: Path, log: Path, marker: str) -> list[str]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    return [PY, str(script), str(log), marker, f"--password={ARG_SECRET}"]


def start_server(argv: list[str], env: dict[str, str], log: Path, spawned: list[psutil.Process]) -> tuple:
    child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    proc = psutil.Process(child.pid)
    spawned.append(proc)
    assert wait_for(lambda: log.exists() and "listening on" in log.read_text()), "the server did not start"
    words = log.read_text().splitlines()[-1].split()
    return proc, int(words[2]), int(words[4])


def process_service(name: str, marker: str, **fields: object) -> Service:
    return Service.objects.create(
        name=name, kind="process", settings={"cmdline_contains": marker}, timeout=2, failure_threshold=1, **fields
    )


def probe_rows(service: Service) -> None:
    now = timezone.now()
    ProbeResult.objects.create(service=service, checked_at=now - timedelta(seconds=20), status="up", detail="running")
    ProbeResult.objects.create(
        service=service, checked_at=now - timedelta(seconds=10), status="down", detail=f"hung; password={DB_SECRET}"
    )


def kept(service: Service) -> RecoveryAttempt:
    return RecoveryAttempt.objects.filter(service=service).exclude(action_kind="").latest("started_at")


@pytest.mark.slow("starts a real server and restarts it through the engine")
def test_it_keeps_the_tree_ports_and_log_tail_of_a_restarted_process_with_secrets_masked(
    add_action, spawned, marker, secrets_env, tmp_path
):
    log = tmp_path / "server.log"
    argv = server_argv(tmp_path, log, marker)
    old, port, child_pid = start_server(argv, secrets_env, log, spawned)
    svc = process_service("api", marker, evidence_log=[str(log)], evidence_lines=20)
    probe_rows(svc)
    new_log = tmp_path / "restarted.log"
    env = {"APP_DB_PASSWORD": "${APP_DB_PASSWORD}", "APP_DSN_PW": "${APP_DSN_PW}"}
    add_action(
        svc, "restart_process", {"argv": [*argv[:2], str(new_log), *argv[3:]], "settle_seconds": 0.3, "env": env}
    )
    expected_tail = log.read_text().splitlines()[-20:]

    (result,) = recover_services(["api"], trigger="manual")

    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    spawned.append(psutil.Process(attempt.action_data["started"]["pid"]))
    assert result["outcome"] == "succeeded", attempt.action_detail
    assert not old.is_running()  # the restart destroyed it: only the evidence is left
    ev = attempt.evidence
    assert datetime.fromisoformat(ev["captured_at"]) >= attempt.started_at
    assert 0 < ev["took_ms"] < 2000 and "incomplete" not in ev
    procs = {p["pid"]: p for p in ev["processes"]}
    assert set(procs) == {old.pid, child_pid}
    main = procs[old.pid]
    assert main["cmdline"] == [PY, argv[1], str(log), marker, f"--password={MASK}"]
    assert main["listening"] == [{"ip": "127.0.0.1", "port": port}]
    assert main["age_s"] > 0 and main["rss_bytes"] > 1_000_000 and isinstance(main["cpu_percent"], float)
    assert datetime.fromisoformat(main["started_at"]).timestamp() == pytest.approx(old.create_time(), abs=1)
    assert procs[child_pid]["ppid"] == old.pid and procs[child_pid]["cmdline"][-1] == f"{marker}-child"
    (tail,) = [entry for entry in ev["logs"] if entry["path"] == str(log)]
    assert tail["truncated"] is True and "error" not in tail
    assert len(tail["lines"]) == 20
    assert tail["lines"][:17] == expected_tail[:17]  # the last 20 lines only, oldest first
    assert tail["lines"][17] == "connecting with password ***"
    assert tail["lines"][18] == f"database postgres://{MASK}@127.0.0.1:5432/app unreachable"
    assert [p["status"] for p in ev["probe"]] == ["up", "down"]
    assert ev["probe"][1]["detail"] == f"hung; password={MASK}"
    stored = json.dumps(RecoveryAttempt.objects.get(pk=attempt.pk).evidence)
    for secret in (DB_SECRET, DSN_SECRET, ARG_SECRET):
        assert secret not in stored


@pytest.mark.slow("starts a real process and samples its CPU before the repair")
@pytest.mark.parametrize("capture", [True, False])
def test_it_captures_for_a_command_only_with_capture_evidence(add_action, spawned, marker, tmp_path, capture):
    worker = subprocess.Popen([PY, "-c", "import time; time.sleep(10**6)", marker], start_new_session=True)
    spawned.append(psutil.Process(worker.pid))
    log = tmp_path / "worker.log"
    log.write_text("one\ntwo\nthree\n")
    svc = process_service("worker", marker, evidence_log=[str(log)], evidence_lines=2)
    settings = {"argv": [PY, "-c", "pass"], **({"capture_evidence": True} if capture else {})}
    add_action(svc, "command", settings)

    recover_services(["worker"], trigger="manual")

    ev = kept(svc).evidence
    if not capture:
        assert ev == {}
        return
    assert [p["pid"] for p in ev["processes"]] == [worker.pid]
    assert ev["logs"] == [{"path": str(log), "lines": ["two", "three"], "truncated": True}]


def test_it_records_a_missing_log_a_fifo_and_a_huge_file_without_failing_the_repair(add_action, marker, tmp_path):
    missing, fifo, huge = tmp_path / "gone.log", tmp_path / "pipe.log", tmp_path / "huge.log"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer: it must not
    with huge.open("wb") as handle:  # 1 GiB, sparse: reading it whole would take long
        handle.truncate(1024**3)
        handle.seek(0, os.SEEK_END)
        handle.write("".join(f"line {i} {'x' * 900}\n" for i in range(400)).encode())
    svc = Service.objects.create(
        name="web",
        kind="http",
        settings={"url": "http://127.0.0.1:9/"},
        timeout=1,
        evidence_log=[str(missing), str(fifo), str(huge)],
        evidence_lines=10_000,
    )
    add_action(svc, "command", {"argv": [PY, "-c", "pass"], "capture_evidence": True})
    started = time.monotonic()

    (result,) = recover_services(["web"], trigger="manual")

    attempt = RecoveryAttempt.objects.get(pk=result["attempt"])
    assert attempt.action_ok is True, attempt.action_detail  # the command ran: evidence trouble stops nothing
    assert time.monotonic() - started < 5
    ev = attempt.evidence
    by_path = {entry["path"]: entry for entry in ev["logs"]}
    assert by_path[str(missing)] == {"path": str(missing), "lines": [], "truncated": False, "error": "no such file"}
    assert by_path[str(fifo)]["error"] == "not a regular file"
    big = by_path[str(huge)]
    assert big["truncated"] is True and "error" not in big
    assert big["lines"][-1].startswith("line 399 ") and 10 < len(big["lines"]) < 150  # read from the end, bounded
    assert len(json.dumps(ev).encode()) <= evidence.MAX_BYTES
    assert ev["processes"] == [] and "incomplete" not in ev


class SlowDockerApi(DockerApi):
    """The stand-in, but its first inspect answer trickles out over seconds (each byte in time for a socket
    timeout, the whole far too slow); the restart itself answers at once and is timed."""

    def __init__(self) -> None:
        super().__init__()
        self.restarted_at: float | None = None

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        if method == "POST":
            self.restarted_at = time.monotonic()
        # Only the evidence's inspect (before the restart): the re-probe after it answers at once.
        if method == "GET" and request.path.endswith("/json") and self.restarted_at is None:
            self.requests.append((method, request.path))
            body = json.dumps(self.containers["web"].document("web")).encode()
            request.send_response(200)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            step = max(1, len(body) // 100)
            with contextlib.suppress(OSError):  # the evidence's reader may have given up: that is the point
                for i in range(0, len(body), step):
                    request.wfile.write(body[i : i + step])
                    request.wfile.flush()
                    time.sleep(0.04)
            request.close_connection = True
            return
        super().handle(request, method)


@pytest.fixture
def slow_api() -> Iterator[SlowDockerApi]:
    with SlowDockerApi() as api:
        yield api


def docker_service(api: DockerApi, **fields: object) -> Service:
    return Service.objects.create(
        name="app", kind="docker", settings={"container": "web", "socket": api.socket}, timeout=2, **fields
    )


def test_it_never_delays_the_repair_past_evidence_timeout_and_says_incomplete(add_action, slow_api):
    slow_api.containers["web"] = Container(status="exited", exit_code=137)
    svc = docker_service(slow_api, evidence_timeout=0.1)
    add_action(svc, "restart_container", {"container": "web", "socket": slow_api.socket, "stop_timeout": 1})
    started = time.monotonic()

    (result,) = recover_services(["app"], trigger="manual")

    assert slow_api.restarted_at is not None
    assert slow_api.restarted_at - started < 2  # the inspect alone takes 4 s
    assert result["outcome"] == "succeeded"
    ev = RecoveryAttempt.objects.get(pk=result["attempt"]).evidence
    assert ev["incomplete"].startswith("timeout after 0.1 s")
    assert ev["took_ms"] < 100 + 500 and "container" not in ev  # the timeout, and some slack on a busy machine


@pytest.mark.slow("restarts a container through the Docker stand-in and re-probes it")
def test_it_keeps_a_containers_state_and_last_log_lines(add_action, monkeypatch):
    monkeypatch.setenv("APP_DB_PASSWORD", DB_SECRET)
    with DockerApi() as api:
        logs = [(1, f"line {i}") for i in range(10)] + [(2, f"fatal: auth failed for password {DB_SECRET}")]
        api.containers["web"] = Container(status="exited", exit_code=137, error="OOM", logs=logs)
        svc = docker_service(api, evidence_lines=3)
        add_action(svc, "restart_container", {"container": "web", "socket": api.socket, "stop_timeout": 1})

        (result,) = recover_services(["app"], trigger="manual")

    ev = RecoveryAttempt.objects.get(pk=result["attempt"]).evidence
    assert result["outcome"] == "succeeded" and "incomplete" not in ev
    assert ev["container"]["status"] == "exited" and ev["container"]["exit_code"] == 137
    assert ev["container"]["error"] == "OOM" and ev["container"]["running"] is False
    (tail,) = ev["logs"]
    assert tail == {"path": "docker:web", "lines": ["line 8", "line 9", "fatal: auth failed for password ***"],
                    "truncated": True}  # fmt: skip


def test_it_finds_the_tunnels_recorded_connector(spawned, marker):
    proc = subprocess.Popen([PY, "-c", "import time; time.sleep(10**6)", marker], start_new_session=True)
    spawned.append(psutil.Process(proc.pid))
    Tunnel.objects.create(
        name="edge", command=[PY], pid=proc.pid, pid_create_time=psutil.Process(proc.pid).create_time()
    )
    action = RestartTunnelAction({"tunnel": "edge"}, service=Service(name="s", kind="http"), timeout=5)
    assert action.captures_evidence() is True
    assert [p.pid for p in action.evidence_targets()] == [proc.pid]
    assert action.evidence_logs()[0].endswith("tunnel-edge.log")


def test_it_cuts_the_evidence_to_its_byte_bound_oldest_lines_first():
    big = {"captured_at": "x", "processes": [], "probe": [], "logs": [{"path": "a", "lines": ["y" * 900] * 200}]}
    cut = evidence.bounded(big)
    assert len(json.dumps(cut).encode()) <= evidence.MAX_BYTES
    assert cut["truncated"] is True and cut["logs"][0]["truncated"] is True and 10 < len(cut["logs"][0]["lines"]) < 200


def test_it_shows_the_evidence_kept_on_the_recovery_history_page(staff_client):
    svc = Service.objects.create(name="api", kind="http", settings={"url": "http://127.0.0.1:9/"})
    kept_evidence = {
        "captured_at": "2026-12-01T10:00:00+00:00",
        "processes": [{"pid": 4242, "name": "api", "age_s": 61.2, "listening": [{"ip": "127.0.0.1", "port": 8080}]}],
        "logs": [
            {"path": "/var/log/api.log", "lines": ["a", "b"], "truncated": True},
            {"path": "/x", "error": "no such file"},
        ],
        "incomplete": "timeout after 2 s",
    }
    RecoveryAttempt.objects.create(service=svc, action_kind="restart_process", trigger="manual", evidence=kept_evidence)
    RecoveryAttempt.objects.create(service=svc, action_kind="http", trigger="manual")

    body = staff_client.get("/recovery/").content.decode()

    assert body.count("evidence kept") == 1
    assert "pid 4242 api, up 61 s, listening 127.0.0.1:8080" in body
    assert "/var/log/api.log: last 2 lines" in body and "/x: no such file" in body
    assert "incomplete: timeout after 2 s" in body


def test_it_masks_long_log_lines_quickly_and_still_finds_credentials():
    masker = evidence.Masker([DB_SECRET])
    lines = [f"{'x' * 5000} see https://app:{DSN_SECRET}@127.0.0.1/ with {DB_SECRET}"] * 30
    started = time.monotonic()
    cleaned = masker.text("\n".join(lines)).split("\n")
    assert time.monotonic() - started < 1  # core.mask's URL pattern is linear on long words
    assert cleaned[0].endswith(f"see https://{MASK}@127.0.0.1/ with ***") and len(cleaned) == 30
