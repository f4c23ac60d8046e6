from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers import HttpServer, TcpServer


@pytest.fixture(autouse=True)
def _closed_breaker() -> Iterator[None]:
    """The database circuit breaker is process-wide: one test's outage must not fail the next test fast; nor may its
    last transient error hold back the next test's heartbeat takeovers (recovery.owner waits after one)."""
    yield
    from core import db

    db.breaker.close()
    db.last_transient_at = None


@pytest.fixture(autouse=True)
def _status_read_per_request() -> Iterator[None]:
    """/health/status and /metrics read the database per request (STATUS_CACHE_SECONDS=0): tests write rows and
    read them back within milliseconds, and the snapshot is process-wide. tests/api/test_snapshot.py turns
    it on; processes a test starts (tests/faults) keep the default, as a deployment would.
    override_settings, not pytest-django's `settings`: several tests take a parameter named `settings`."""
    from django.test import override_settings

    with override_settings(STATUS_CACHE_SECONDS=0):
        yield


@pytest.fixture
def outage() -> Iterator:
    """A real outage of the portal's database that the test (or any thread) starts and that ends with the test."""
    from tests.core.outage_support import Outage

    started = Outage()
    yield started
    started.end()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer().start()
    yield server
    server.stop()


@pytest.fixture
def make_http_server() -> Iterator:
    """A factory for several HTTP servers in one test; all are stopped after it."""
    servers: list[HttpServer] = []

    def make() -> HttpServer:
        server = HttpServer().start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def tcp_server() -> Iterator[TcpServer]:
    server = TcpServer().start()
    yield server
    server.stop()


def postgres_configured() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


requires_postgres = pytest.mark.skipif(
    not postgres_configured(),
    reason="needs PostgreSQL: set DATABASE_URL=postgres://... (CI runs this against the real server)",
)
