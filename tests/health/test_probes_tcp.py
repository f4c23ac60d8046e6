from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError
from health.probes.tcp import TcpProbe
from health.runner import probe_once
from tests.health.factories import ServiceFactory
from tests.servers import free_port

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
