"""The `docker` probe against a loopback stand-in of the Docker Engine API on a unix socket
(tests/health/docker_api.py): no Docker daemon can run here."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from configfile.config import export_text, import_text
from core.spec import ConfigError
from health.models import Service
from health.probes.base import DEGRADED, UP, ProbeError, ProbeTimeout
from health.probes.docker import DockerProbe, demux
from health.runner import probe_once
from tests.factories import ServiceFactory
from tests.health.docker_api import Container, DockerApi

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api() -> Iterator[DockerApi]:
    with DockerApi() as server:
        yield server


def probe(api: DockerApi, container: str = "web", timeout: float = 2, **settings: object) -> DockerProbe:
    cfg = DockerProbe.validate_settings({"container": container, "socket": api.socket, **settings}, "settings")
    return DockerProbe(cfg, timeout=timeout)


def test_it_is_up_when_the_container_runs_without_a_healthcheck(api):
    api.containers["web"] = Container()
    outcome = probe(api).run()
    assert outcome.status == UP and outcome.detail == "container web is running"
    assert api.requests == [("GET", "/containers/web/json")]


def test_it_is_up_only_when_a_healthcheck_says_healthy(api):
    api.containers["web"] = Container(health="healthy")
    assert probe(api).run().detail == "container web is running, healthy"
    api.containers["web"].health = "starting"
    outcome = probe(api).run()
    assert outcome.status == DEGRADED and "health starting" in outcome.detail
    api.containers["web"].health = "unhealthy"
    with pytest.raises(ProbeError, match="container web is running, health unhealthy"):
        probe(api).run()


def test_it_shows_what_the_failing_healthcheck_said(api):
    api.containers["web"] = Container(health="unhealthy", check_output="curl: (7) Failed to connect\n")
    with pytest.raises(ProbeError) as caught:
        probe(api, log_lines=0).run()
    assert str(caught.value) == (
        "container web is running, health unhealthy (last check exit 1: curl: (7) Failed to connect)"
    )


def test_it_is_down_with_the_exit_code_and_the_last_log_lines(api):
    api.containers["web"] = Container(
        status="exited",
        exit_code=137,
        logs=[(1, f"line {n}") for n in range(20)] + [(2, "fatal: out of memory")],
    )
    with pytest.raises(ProbeError) as caught:
        probe(api, log_lines=3).run()
    detail = str(caught.value)
    assert detail.startswith("container web is exited (exit code 137); last log lines: ")
    assert detail.endswith("line 18 | line 19 | fatal: out of memory")
    assert "line 17" not in detail
    assert ("GET", "/containers/web/logs?stdout=1&stderr=1&tail=3") in api.requests


def test_it_reads_the_raw_log_stream_of_a_tty_container(api):
    api.containers["web"] = Container(status="dead", exit_code=1, tty=True, logs=[(1, "crashed \x1b[31mred")])
    with pytest.raises(ProbeError, match=r"exit code 1\); last log lines: crashed  \[31mred$"):
        probe(api).run()


def test_it_scrubs_secrets_from_log_lines_and_bounds_them(api, monkeypatch):
    secret = "docker-log-secret-4711"
    monkeypatch.setenv("OPS_DOCKER_SECRET", secret)
    api.containers["web"] = Container(status="exited", exit_code=2, logs=[(1, "x" * 5000 + f" token={secret}")])
    service = ServiceFactory.build(kind="docker", settings={"container": "web", "socket": api.socket})
    checker = DockerProbe(service.settings, timeout=2)
    checker.secrets.append(secret)
    with pytest.raises(ProbeError) as caught:
        checker.run()
    assert secret not in str(caught.value) and "token=***" in str(caught.value)
    assert len(str(caught.value)) < 1000


def test_it_says_a_container_does_not_exist(api):
    with pytest.raises(ProbeError, match=r"container ghost does not exist \(Docker answered 404\)"):
        probe(api, container="ghost").run()


def test_it_says_the_socket_is_missing(tmp_path):
    missing = str(tmp_path / "docker.sock")
    cfg = DockerProbe.validate_settings({"container": "web", "socket": missing}, "settings")
    with pytest.raises(ProbeError, match=f"the Docker socket {re.escape(missing)} does not exist"):
        DockerProbe(cfg, timeout=1).run()


def test_it_says_nothing_listens_on_a_stale_socket(api):
    # A socket file whose server is gone (as after a daemon crash).
    path = api.dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    cfg = DockerProbe.validate_settings({"container": "web", "socket": str(path)}, "settings")
    with pytest.raises(ProbeError, match="nothing listens on the Docker socket"):
        DockerProbe(cfg, timeout=1).run()


def test_it_times_out_when_the_engine_hangs(api):
    api.containers["web"] = Container()
    api.hang = True
    with pytest.raises(ProbeTimeout, match="no answer within 0.3 s"):
        probe(api, timeout=0.3).run()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_it_is_misconfigured_without_permission_on_the_socket(api):
    # The socket is mode 000; a child without CAP_DAC_OVERRIDE (as a portal not in the docker group) may not use it.
    api.containers["web"] = Container()
    os.chmod(api.socket, 0)
    code = (
        "from health.probes.docker import DockerProbe\n"
        "from health.probes.base import ProbeConfigError\n"
        "try:\n"
        f"    DockerProbe({{'container': 'web', 'socket': {api.socket!r}, 'log_lines': 5}}, timeout=2).run()\n"
        "except ProbeConfigError as exc:\n"
        "    print(exc)\n"
    )
    drop = "--bounding-set=-dac_override,-dac_read_search"
    argv = ["setpriv", drop, "--inh-caps=-dac_override,-dac_read_search", sys.executable, "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=30, check=False)
    assert "settings.socket: no permission to use the Docker socket" in done.stdout, done.stderr
    assert api.requests == []


def test_it_demuxes_docker_frames_and_leaves_plain_text_alone():
    frames = b"\x01\x00\x00\x00\x00\x00\x00\x03ab\n\x02\x00\x00\x00\x00\x00\x00\x02c\n"
    assert demux(frames) == b"ab\nc\n"
    assert demux(b"plain text, no frames\n") == b"plain text, no frames\n"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, r"settings\.container: is required"),
        ({"container": "../../info"}, r"settings\.container: must be a container name or id"),
        ({"container": "web", "socket": "docker.sock"}, r"settings\.socket: must be an absolute path"),
        ({"container": "web", "socket": "/tmp/a\x00b"}, r"settings\.socket: must not contain a NUL"),
        ({"container": "web", "log_lines": 500}, r"settings\.log_lines: must be at most 50"),
        ({"container": "web", "image": "x"}, r"settings\.image: unknown key"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        DockerProbe.validate_settings(settings, "settings")
    outcome = probe_once(ServiceFactory.build(kind="docker", settings=settings))
    assert outcome.status == "misconfigured"
    assert re.search(message, outcome.detail), outcome.detail


@pytest.mark.django_db
def test_it_round_trips_through_importconfig_and_exportconfig_and_probes(api):
    api.containers["db"] = Container(health="healthy")
    import_text(
        f'[[service]]\nname = "db"\nkind = "docker"\ncontainer = "db"\nsocket = "{api.socket}"\nlog_lines = 8\n'
    )
    before = {s.name: s.settings for s in Service.objects.filter(kind="docker")}
    exported = export_text()
    Service.objects.all().delete()
    import_text(exported)
    assert {s.name: s.settings for s in Service.objects.filter(kind="docker")} == before
    assert before["db"] == {"container": "db", "socket": api.socket, "log_lines": 8}
    outcome = probe_once(Service.objects.get(name="db"))
    assert outcome.status == UP and outcome.detail == "container db is running, healthy"
