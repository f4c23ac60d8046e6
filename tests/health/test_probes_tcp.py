from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from configfile.config import export_text, import_text
from core.spec import ConfigError
from health.models import Service
from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError
from health.probes.tcp import MAX_READ, TcpProbe
from health.runner import probe_once
from tests.factories import ServiceFactory
from tests.health.tcp_server import hold, read_line, scripted
from tests.servers import free_port, wait_for

pytestmark = pytest.mark.django_db


def tcp_service(port: int, timeout: float = 2.0, degraded_latency_ms: int = 2000):
    return ServiceFactory.build(
        kind="tcp",
        settings={"host": "127.0.0.1", "port": port},
        timeout=timeout,
        degraded_latency_ms=degraded_latency_ms,
    )


@contextlib.contextmanager
def full_backlog(drain_after: float | None = None) -> Iterator[int]:
    """A port whose accept queue is full, so a new connect waits (the kernel drops its SYN).

    With `drain_after`, the queue is emptied after that many seconds and the waiting connect
    completes on the SYN's retransmission (about 1 s after it began).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        held.append(c)
    time.sleep(0.2)
    stop = threading.Event()

    def drain() -> None:
        if stop.wait(drain_after):
            return
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=drain, daemon=True)
    if drain_after is not None:
        thread.start()
    try:
        yield port
    finally:
        stop.set()
        if drain_after is not None:
            thread.join(timeout=5)
        for c in held:
            c.close()
        listener.close()


def test_it_is_up_when_the_port_is_open(tcp_server):
    outcome = probe_once(tcp_service(tcp_server.port))
    assert outcome.status == UP
    assert outcome.detail == f"connected to 127.0.0.1:{tcp_server.port}"
    assert tcp_server.accepted >= 0  # accepted asynchronously; the probe itself saw the connection


def test_it_is_down_when_the_port_is_closed():
    port = free_port()
    outcome = probe_once(tcp_service(port))
    assert outcome.status == DOWN
    assert outcome.detail == f"connect to 127.0.0.1:{port} failed: Connection refused"


@pytest.mark.slow("waits out the connect timeout")
def test_it_times_out_when_the_connect_hangs():
    with full_backlog() as port:
        start = time.monotonic()
        outcome = probe_once(tcp_service(port, timeout=0.5))
        elapsed = time.monotonic() - start
    assert outcome.status == DOWN
    assert "timed out after 0.5 s" in outcome.detail
    assert elapsed < 3


@pytest.mark.slow("a connect slowed past the degraded latency")
def test_it_is_degraded_when_the_connect_is_slow():
    with full_backlog(drain_after=0.3) as port:
        outcome = probe_once(tcp_service(port, timeout=5, degraded_latency_ms=500))
    assert outcome.status == DEGRADED
    assert outcome.latency_ms > 500
    assert "connected to" in outcome.detail


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"host": "127.0.0.1"}, r"settings\.port: is required"),
        ({"port": 80}, r"settings\.host: is required"),
        ({"host": "127.0.0.1", "port": 70000}, r"settings\.port: must be at most 65535"),
        ({"host": "127.0.0.1", "port": "80"}, r"settings\.port: must be a positive integer"),
        ({"host": "", "port": 80}, r"settings\.host: must be a non-empty string"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ProbeConfigError, match=message):
        TcpProbe(settings, timeout=1)
    outcome = probe_once(ServiceFactory.build(kind="tcp", settings=settings))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error: settings.")


# -- issue 18 item 5: `send` / `expect`, a banner check against a loopback server the test writes
def exchange_service(port: int, timeout: float = 2.0, **settings: Any) -> Any:
    return ServiceFactory.build(kind="tcp", settings={"host": "127.0.0.1", "port": port, **settings}, timeout=timeout)


def _banner(conn: socket.socket) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.2 test\r\n")
    conn.recv(1)  # hold the connection until the client closes it


def _redis_like(conn: socket.socket) -> None:
    if read_line(conn) != b"PING\r\n":
        conn.sendall(b"-ERR unknown command\r\n")
        return  # and close
    conn.sendall(b"+PONG\r\n")
    conn.recv(1)


def _bytes_echo(conn: socket.socket) -> None:
    conn.sendall(b"\x00\x01hello\xff" + conn.recv(3))
    conn.recv(1)


def test_it_is_up_when_the_banner_holds_the_expected_text():
    with scripted(_banner) as server:
        outcome = probe_once(exchange_service(server.port, expect="SSH-2.0-"))
    assert outcome.status == UP
    assert outcome.detail == f"connected to 127.0.0.1:{server.port}, received 'SSH-2.0-OpenSSH_9.2 test\\r\\n'"


def test_it_sends_text_and_checks_the_answer():
    with scripted(_redis_like) as server:
        up = probe_once(exchange_service(server.port, send="PING\r\n", expect="+PONG"))
        down = probe_once(exchange_service(server.port, send="PONG\r\n", expect="+PONG"))
    assert up.status == UP, up.detail
    assert "'+PONG\\r\\n'" in up.detail
    assert down.status == DOWN
    assert down.detail == (
        f"127.0.0.1:{server.port} closed the connection without '+PONG', got: '-ERR unknown command\\r\\n'"
    )


def test_it_sends_and_expects_bytes_given_as_hex():
    with scripted(_bytes_echo) as server:
        outcome = probe_once(exchange_service(server.port, send_hex="41 42 43", expect_hex="ff414243"))
    assert outcome.status == UP, outcome.detail
    assert "hello" in outcome.detail


def test_it_is_up_after_sending_when_nothing_is_expected():
    with scripted(lambda conn: received.append(read_line(conn))) as server:
        received: list[bytes] = []
        outcome = probe_once(exchange_service(server.port, send="HELLO\n"))
        assert wait_for(lambda: received == [b"HELLO\n"], timeout=5)
    assert outcome.status == UP
    assert outcome.detail.endswith(", sent 6 bytes")


def test_it_is_down_when_the_server_closes_without_the_text():
    with scripted(lambda conn: conn.sendall(b"220 mail.example ESMTP\r\n")) as server:
        outcome = probe_once(exchange_service(server.port, expect="SSH-2.0-"))
    assert outcome.status == DOWN
    assert outcome.detail == (
        f"127.0.0.1:{server.port} closed the connection without 'SSH-2.0-', got: '220 mail.example ESMTP\\r\\n'"
    )


def test_it_times_out_when_the_server_says_nothing():
    with scripted(hold) as server:
        start = time.monotonic()
        outcome = probe_once(exchange_service(server.port, timeout=0.5, expect="SSH-2.0-"))
        elapsed = time.monotonic() - start
    assert outcome.status == DOWN
    assert outcome.detail == f"no 'SSH-2.0-' from 127.0.0.1:{server.port} within 0.5 s, got: ''"
    assert elapsed < 2


def test_it_reads_at_most_64_kib_of_an_endless_reply():
    def endless(conn: socket.socket) -> None:
        while True:
            conn.sendall(b"x" * 4096)

    with scripted(endless) as server:
        outcome = probe_once(exchange_service(server.port, timeout=5, expect="SSH-2.0-"))
    assert outcome.status == DOWN
    assert outcome.detail.startswith(f"127.0.0.1:{server.port} sent {MAX_READ} bytes without 'SSH-2.0-': 'xxx")
    assert MAX_READ == 65536


def test_it_is_down_on_a_closed_port_with_send_and_expect():
    port = free_port()
    outcome = probe_once(exchange_service(port, send="PING\r\n", expect="+PONG"))
    assert outcome.status == DOWN
    assert outcome.detail == f"connect to 127.0.0.1:{port} failed: Connection refused"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"send": "AUTH ${SECRET}\r\n"}, r"settings\.send: is plain text: \$\{VAR\} is not expanded"),
        ({"expect": "${BANNER}"}, r"settings\.expect: is plain text"),
        ({"send": "a", "send_hex": "61"}, r"settings\.send_hex: give send or send_hex, not both"),
        ({"expect": "a", "expect_hex": "61"}, r"settings\.expect_hex: give expect or expect_hex, not both"),
        ({"expect_hex": "zz"}, r"settings\.expect_hex: must be hex digits"),
        ({"send": ""}, r"settings\.send: must be a non-empty string"),
        ({"expect": 5}, r"settings\.expect: must be a non-empty string"),
    ],
)
def test_it_names_the_bad_exchange_key(settings, message):
    full = {"host": "127.0.0.1", "port": 80, **settings}
    with pytest.raises(ConfigError, match=message):
        TcpProbe.validate_settings(full, "settings")
    outcome = probe_once(ServiceFactory.build(kind="tcp", settings=full))
    assert outcome.status == "misconfigured"
    assert re.search(message, outcome.detail), outcome.detail


ROUND_TRIP = """
[[service]]
name = "sftp"
kind = "tcp"
host = "127.0.0.1"
port = 22
expect = "SSH-2.0-"

[[service]]
name = "memcached"
kind = "tcp"
host = "127.0.0.1"
port = 11211
send = "version\\r\\n"
expect = "VERSION "
"""


def test_it_round_trips_through_importconfig_and_exportconfig():
    import_text(ROUND_TRIP)
    before = {s.name: s.settings for s in Service.objects.filter(kind="tcp")}
    exported = export_text()
    Service.objects.all().delete()
    import_text(exported)
    assert {s.name: s.settings for s in Service.objects.filter(kind="tcp")} == before
    assert before["memcached"] == {"host": "127.0.0.1", "port": 11211, "send": "version\r\n", "expect": "VERSION "}
