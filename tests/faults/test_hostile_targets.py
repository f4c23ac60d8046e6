"""Probe targets that misbehave: an endless body, a slowloris trickle, a self-signed certificate, a redirect loop.

Each is a real loopback server; the probe must come back within its timeout (plus a generous margin for a
loaded machine), hold a bounded amount of memory, and say plainly what was wrong. A round with all of them
and one healthy service still records the healthy one as up.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from health.models import Service
from health.probes.base import DOWN, UP
from health.runner import probe_once, run_round
from tests.servers import HttpServer, Reply

pytestmark = [pytest.mark.faults, pytest.mark.django_db]

TIMEOUT = 2.0
MARGIN = 3.0  # scheduling slack on a shared machine; a probe that ignored its timeout would take far longer
MEMORY_BOUND = 8 * 1024 * 1024  # PROBE_MAX_BODY_BYTES is 1 MiB: a few copies of it at most


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[HttpServer]:
    """An HTTPS server whose certificate is self-signed (generated here with the openssl CLI)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = HttpServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.url = f"https://127.0.0.1:{server.port}"
    server.start()
    yield server
    server.stop()


def hostile(make_http_server, tls_server: HttpServer) -> dict[str, str]:
    endless = make_http_server()
    endless.reply = Reply(200, endless=True)
    trickle = make_http_server()
    trickle.reply = Reply(200, b"x" * 200, trickle=0.25)
    loop = make_http_server()
    loop.reply = Reply(302, b"", headers={"Location": "/again"})
    return {
        "endless": endless.url + "/",
        "slowloris": trickle.url + "/",
        "selfsigned": tls_server.url + "/",
        "redirects": loop.url + "/again",
    }


EXPECTED = {
    "endless": "response body larger than",
    "slowloris": f"not complete within {TIMEOUT:g} s",
    "selfsigned": "TLS error",
    "redirects": "too many redirects",
}


def service(name: str, url: str) -> Service:
    return Service.objects.create(name=name, kind="http", settings={"url": url}, timeout=TIMEOUT)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_it_gives_up_on_a_hostile_target_in_bounded_time_and_memory(name, make_http_server, tls_server) -> None:
    url = hostile(make_http_server, tls_server)[name]
    svc = service(name, url)
    tracemalloc.start()
    try:
        start = time.monotonic()
        outcome = probe_once(svc)
        elapsed = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.status == DOWN
    assert EXPECTED[name] in outcome.detail, outcome.detail
    assert "Traceback" not in outcome.detail and len(outcome.detail) <= 500
    assert elapsed < TIMEOUT + MARGIN, f"{name}: {elapsed:.1f} s"
    assert peak < MEMORY_BOUND, f"{name}: {peak / 1e6:.1f} MB"


def test_it_records_a_round_of_hostile_targets_beside_a_healthy_one(make_http_server, tls_server) -> None:
    urls = hostile(make_http_server, tls_server)
    good = make_http_server()
    services = [service(name, url) for name, url in urls.items()] + [service("fine", good.url + "/")]
    start = time.monotonic()
    result = run_round(services)
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT + MARGIN  # concurrently: the round costs one timeout, not the sum
    assert result.outcomes["fine"].status == UP
    for name, fragment in EXPECTED.items():
        row = Service.objects.get(name=name)
        assert row.status == DOWN and fragment in row.last_detail, (name, row.last_detail)
