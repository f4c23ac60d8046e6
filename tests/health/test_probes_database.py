"""The `database` probe: `SELECT 1` on the portal's own database (SQLite or PostgreSQL, as configured)."""

from __future__ import annotations

import contextlib
import copy
import socket
import threading

import pytest
from django.db import connection
from django.db.utils import load_backend

from health.probes import database as database_probe
from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError
from health.probes.database import DatabaseProbe
from health.runner import probe_once, run_probes
from tests.factories import ServiceFactory
from tests.health.test_probes_postgres import needs_local_postgres
from tests.servers import free_port

pytestmark = pytest.mark.django_db


def broken_connection():
    """A real connection of the configured backend that points where no database is."""
    cfg = copy.deepcopy(connection.settings_dict)
    if connection.vendor == "sqlite":
        cfg["NAME"] = "/nonexistent-dir/opsportal.sqlite3"
    else:
        cfg["HOST"], cfg["PORT"] = "127.0.0.1", free_port()
        cfg["OPTIONS"] = {**cfg.get("OPTIONS", {}), "connect_timeout": 2}
    return load_backend(cfg["ENGINE"]).DatabaseWrapper(cfg, alias="broken")


def test_it_is_up_when_the_portal_database_answers():
    outcome = probe_once(ServiceFactory.build(kind="database", settings={}))
    assert outcome.status == UP
    assert outcome.detail == f"{connection.vendor} answered SELECT 1"


def test_it_is_up_from_a_worker_thread_of_a_round(transactional_db):
    service = ServiceFactory.build(name="portal-db", kind="database", settings={})
    assert run_probes([service])["portal-db"].status == UP


def test_it_is_down_when_the_database_cannot_be_reached(monkeypatch):
    broken = broken_connection()
    monkeypatch.setattr(database_probe, "connection", broken)
    try:
        outcome = probe_once(ServiceFactory.build(kind="database", settings={}))
    finally:
        broken.close()
    assert outcome.status == DOWN
    assert outcome.detail.startswith("database error: OperationalError: ")


def test_it_rejects_settings_naming_the_key():
    with pytest.raises(ProbeConfigError, match=r"settings\.query: unknown key"):
        DatabaseProbe({"query": "SELECT 2"}, timeout=1)
    outcome = probe_once(ServiceFactory.build(kind="database", settings={"query": "SELECT 2"}))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error: settings.query: unknown key" + "; fix: ")


class DelayingProxy:
    """A TCP proxy to the local PostgreSQL that holds each new connection for `delay` seconds first."""

    def __init__(self, delay: float, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.delay, self.upstream = delay, upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.stop.wait(self.delay):
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        self.sockets.append(server)
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
        self._pump(client, server)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.stop.set()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


def postgres_connection(port: int):
    cfg = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": port,
        "OPTIONS": {"connect_timeout": 5},
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "TIME_ZONE": None,
        "TEST": {},
    }
    return load_backend(cfg["ENGINE"]).DatabaseWrapper(cfg, alias="delayed")


@needs_local_postgres
def test_it_is_degraded_when_the_database_answers_slowly(monkeypatch):
    proxy = DelayingProxy(delay=0.3)
    slow = postgres_connection(proxy.port)
    monkeypatch.setattr(database_probe, "connection", slow)
    try:
        outcome = probe_once(ServiceFactory.build(kind="database", settings={}, degraded_latency_ms=100))
    finally:
        slow.close()
        proxy.close()
    assert outcome.status == DEGRADED
    assert outcome.latency_ms >= 300
    assert outcome.detail.endswith("postgresql answered SELECT 1")
