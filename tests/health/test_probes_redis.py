"""The `redis` probe against the machine's Redis (127.0.0.1:6379, database 13 only) and private redis-servers."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from configfile.config import export_text, import_text
from core.spec import ConfigError
from health.models import Service
from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError
from health.probes.redis import RedisProbe
from health.runner import probe_once
from tests.factories import ServiceFactory
from tests.health.redis_server import REDIS_SERVER, RedisServer, make_certs
from tests.health.tcp_server import hold, scripted
from tests.servers import free_port

pytestmark = pytest.mark.django_db

SHARED_DB = 13  # this helper's database on the machine's shared Redis; never another


def _shared_reachable() -> bool:
    try:
        with redis.Redis(host="127.0.0.1", port=6379, db=SHARED_DB, socket_timeout=2, socket_connect_timeout=2) as c:
            return bool(c.ping())
    except redis.RedisError:
        return False


needs_shared_redis = pytest.mark.skipif(not _shared_reachable(), reason="no Redis answers at 127.0.0.1:6379")
needs_redis_server = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def redis_service(timeout: float = 2.0, **settings: Any) -> Any:
    return ServiceFactory.build(kind="redis", settings={"host": "127.0.0.1", **settings}, timeout=timeout)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator:
    """A factory for redis-servers of the test's own (maxmemory, password, TLS), stopped after it."""
    started: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        directory = tmp_path / f"redis{len(started)}"
        directory.mkdir()
        server = RedisServer(directory, **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@needs_shared_redis
def test_it_is_up_against_the_machines_redis():
    outcome = probe_once(redis_service(port=6379, db=SHARED_DB))
    assert outcome.status == UP
    assert outcome.detail == f"redis 127.0.0.1:6379/{SHARED_DB}: PONG"
    assert outcome.latency_ms > 0


@needs_shared_redis
def test_it_says_when_maxmemory_is_0_and_stays_up():
    with redis.Redis(host="127.0.0.1", port=6379, db=SHARED_DB) as c:
        limit = int(c.info("memory")["maxmemory"])
    outcome = probe_once(redis_service(db=SHARED_DB, max_memory_pct=50))
    if limit:
        pytest.skip(f"the machine's Redis has maxmemory {limit}; the private server below covers a limit")
    assert outcome.status == UP
    assert re.fullmatch(
        rf"redis 127\.0\.0\.1:6379/{SHARED_DB}: PONG; used_memory [\d.]+ MiB, maxmemory is 0 \(no limit\): "
        r"max_memory_pct not checked",
        outcome.detail,
    ), outcome.detail


@needs_redis_server
def test_it_is_degraded_when_memory_use_is_above_max_memory_pct(private_redis):
    server = private_redis(maxmemory="64mb")
    degraded = probe_once(redis_service(port=server.port, max_memory_pct=0.1))
    up = probe_once(redis_service(port=server.port, max_memory_pct=99))
    assert degraded.status == DEGRADED
    assert re.search(
        r": PONG; used_memory [\d.]+ MiB of maxmemory 64\.0 MiB \([\d.]+%\) is above max_memory_pct 0\.1%$",
        degraded.detail,
    ), degraded.detail
    assert up.status == UP
    assert re.search(r": PONG; used_memory [\d.]+ MiB of maxmemory 64\.0 MiB \([\d.]+%\)$", up.detail), up.detail


@needs_redis_server
def test_it_authenticates_with_password_env_and_never_shows_the_password(private_redis, monkeypatch):
    password = "Redis-secret-pass-123"
    server = private_redis(password=password)
    monkeypatch.setenv("OPS_TEST_REDIS_PW", password)
    good = probe_once(redis_service(port=server.port, password_env="OPS_TEST_REDIS_PW", db=3))
    monkeypatch.setenv("OPS_TEST_REDIS_PW", password + "-wrong")
    wrong = probe_once(redis_service(port=server.port, password_env="OPS_TEST_REDIS_PW"))
    missing = probe_once(redis_service(port=server.port))
    assert good.status == UP, good.detail
    assert good.detail == f"redis 127.0.0.1:{server.port}/3: PONG"
    assert wrong.status == DOWN
    assert "invalid username-password pair" in wrong.detail or "invalid password" in wrong.detail, wrong.detail
    assert password not in wrong.detail
    assert missing.status == DOWN
    assert "Authentication required" in missing.detail, missing.detail


@needs_redis_server
def test_it_is_down_when_the_database_number_is_out_of_range(private_redis):
    server = private_redis()
    outcome = probe_once(redis_service(port=server.port, db=16))
    assert outcome.status == DOWN
    assert outcome.detail == f"redis 127.0.0.1:{server.port}/16: DB index is out of range"


@needs_redis_server
def test_it_speaks_tls_and_checks_the_certificate(private_redis, tmp_path):
    certs = make_certs(tmp_path / "certs")
    server = private_redis(certs=certs)
    trusted = probe_once(redis_service(port=server.port, tls=True, ca_file=str(certs.ca)))
    untrusted = probe_once(redis_service(port=server.port, tls=True))
    unverified = probe_once(redis_service(port=server.port, tls=True, verify_tls=False))
    plain = probe_once(redis_service(port=server.port, timeout=1))
    assert trusted.status == UP, trusted.detail
    assert trusted.detail == f"redis 127.0.0.1:{server.port}/0: PONG"
    assert untrusted.status == DOWN
    assert "certificate verify failed" in untrusted.detail, untrusted.detail
    assert unverified.status == UP, unverified.detail
    assert plain.status == DOWN  # plain text to a TLS port: the server drops it


def test_it_is_down_on_a_closed_port():
    port = free_port()
    outcome = probe_once(redis_service(port=port))
    assert outcome.status == DOWN
    assert outcome.detail.startswith(f"redis 127.0.0.1:{port}/0: Error 111 connecting to 127.0.0.1:{port}")
    assert "Connection refused" in outcome.detail


def test_it_times_out_when_the_server_never_answers():
    with scripted(hold) as server:
        start = time.monotonic()
        outcome = probe_once(redis_service(port=server.port, timeout=0.5))
        elapsed = time.monotonic() - start
    assert outcome.status == DOWN
    assert outcome.detail == f"redis 127.0.0.1:{server.port}/0: no answer within 0.5 s"
    assert elapsed < 2


def test_it_is_down_when_the_server_is_not_redis():
    def http(conn: socket.socket) -> None:
        conn.recv(64)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    with scripted(http) as server:
        outcome = probe_once(redis_service(port=server.port))
    assert outcome.status == DOWN
    assert outcome.detail.startswith(f"redis 127.0.0.1:{server.port}/0: ")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, r"settings\.host: is required"),
        ({"host": "127.0.0.1", "port": 0}, r"settings\.port: must be a positive integer"),
        ({"host": "127.0.0.1", "db": -1}, r"settings\.db: must be at least 0"),
        ({"host": "127.0.0.1", "tls": "yes"}, r"settings\.tls: must be true or false"),
        ({"host": "127.0.0.1", "max_memory_pct": 101}, r"settings\.max_memory_pct: must be at most 100"),
        ({"host": "127.0.0.1", "max_memory_pct": 0}, r"settings\.max_memory_pct: must be at least 0\.1"),
        ({"host": "127.0.0.1", "ca_file": "/etc/ssl/ca.pem"}, r"settings\.ca_file: applies only with tls = true"),
        ({"host": "127.0.0.1", "verify_tls": False}, r"settings\.verify_tls: applies only with tls = true"),
        (
            {"host": "127.0.0.1", "tls": True, "verify_tls": False, "ca_file": "/x.pem"},
            r"settings\.ca_file: is not used with verify_tls = false",
        ),
        ({"host": "127.0.0.1", "password": "x"}, r"settings\.password: unknown key"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        RedisProbe.validate_settings(settings, "settings")
    outcome = probe_once(ServiceFactory.build(kind="redis", settings=settings))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert re.search(message, outcome.detail), outcome.detail


def test_it_is_misconfigured_when_the_password_variable_is_unset(monkeypatch):
    monkeypatch.delenv("OPS_TEST_REDIS_UNSET", raising=False)
    with pytest.raises(ProbeConfigError, match="environment variable OPS_TEST_REDIS_UNSET is not set"):
        RedisProbe({"host": "127.0.0.1", "password_env": "OPS_TEST_REDIS_UNSET"}, timeout=1).run()
    outcome = probe_once(redis_service(port=free_port(), password_env="OPS_TEST_REDIS_UNSET"))
    assert outcome.status == "misconfigured"
    assert "OPS_TEST_REDIS_UNSET" in outcome.detail


def test_it_is_misconfigured_when_the_ca_file_cannot_be_read(tmp_path):
    outcome = probe_once(redis_service(port=free_port(), tls=True, ca_file=str(tmp_path / "missing.pem")))
    assert outcome.status == "misconfigured"
    assert f"settings.ca_file: cannot read {tmp_path / 'missing.pem'}" in outcome.detail


ROUND_TRIP = """
[[service]]
name = "cache"
kind = "redis"
host = "127.0.0.1"
port = 6380
db = 2
password_env = "REDIS_PASSWORD"
tls = true
ca_file = "/etc/ssl/certs/internal-ca.pem"
max_memory_pct = 90
"""


def test_it_round_trips_through_importconfig_and_exportconfig():
    import_text(ROUND_TRIP)
    before = {s.name: s.settings for s in Service.objects.filter(kind="redis")}
    exported = export_text()
    Service.objects.all().delete()
    import_text(exported)
    assert {s.name: s.settings for s in Service.objects.filter(kind="redis")} == before
    assert next(iter(before.values())) == {
        "host": "127.0.0.1",
        "port": 6380,
        "db": 2,
        "password_env": "REDIS_PASSWORD",
        "tls": True,
        "ca_file": "/etc/ssl/certs/internal-ca.pem",
        "max_memory_pct": 90,
    }
