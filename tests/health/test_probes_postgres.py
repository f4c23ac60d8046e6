"""The `postgres` probe against the machine's real PostgreSQL (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import socket
import threading

import psycopg
import pytest

from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError
from health.probes.postgres import PostgresProbe
from health.runner import probe_once
from tests.factories import ServiceFactory
from tests.servers import free_port

pytestmark = pytest.mark.django_db

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable() -> bool:
    try:
        with psycopg.connect(LOCAL_DSN, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


needs_local_postgres = pytest.mark.skipif(
    not _reachable(), reason="no PostgreSQL answers at 127.0.0.1:5432 as user postgres"
)


def pg_service(timeout: float = 3.0, degraded_latency_ms: int = 2000, **settings):
    return ServiceFactory.build(
        kind="postgres",
        settings={"dsn_env": "OPS_TEST_PG_DSN", **settings},
        timeout=timeout,
        degraded_latency_ms=degraded_latency_ms,
    )


@needs_local_postgres
def test_it_is_up_against_the_real_server(monkeypatch):
    monkeypatch.setenv("OPS_TEST_PG_DSN", LOCAL_DSN)
    outcome = probe_once(pg_service())
    assert outcome.status == UP
    assert outcome.detail == "postgres 127.0.0.1:5432/postgres answered"
    assert outcome.latency_ms > 0


@needs_local_postgres
def test_it_is_degraded_when_the_query_is_slow(monkeypatch):
    monkeypatch.setenv("OPS_TEST_PG_DSN", LOCAL_DSN)
    outcome = probe_once(pg_service(degraded_latency_ms=100, query="SELECT pg_sleep(0.3)"))
    assert outcome.status == DEGRADED
    assert outcome.latency_ms >= 300


@pytest.mark.slow("waits out the statement timeout")
@needs_local_postgres
def test_it_times_out_a_slow_query_with_the_statement_timeout(monkeypatch):
    monkeypatch.setenv("OPS_TEST_PG_DSN", LOCAL_DSN)
    outcome = probe_once(pg_service(timeout=0.5, query="SELECT pg_sleep(10)"))
    assert outcome.status == DOWN
    assert "statement timeout" in outcome.detail


@needs_local_postgres
def test_it_is_down_for_bad_credentials_and_never_shows_the_password(monkeypatch):
    password = "Hunter2-very-secret"
    monkeypatch.setenv("OPS_TEST_PG_DSN", f"postgresql://no_such_role:{password}@127.0.0.1:5432/postgres")
    outcome = probe_once(pg_service())
    assert outcome.status == DOWN
    assert 'role "no_such_role" does not exist' in outcome.detail
    assert password not in outcome.detail


@needs_local_postgres
def test_it_takes_the_password_from_password_env_and_hides_it(monkeypatch):
    password = "Another-secret-pw"
    monkeypatch.setenv("OPS_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=no_such_db_h2 user=postgres")
    monkeypatch.setenv("OPS_TEST_PG_PASSWORD", password)
    outcome = probe_once(pg_service(password_env="OPS_TEST_PG_PASSWORD"))
    assert outcome.status == DOWN
    assert 'database "no_such_db_h2" does not exist' in outcome.detail
    assert password not in outcome.detail


def test_it_is_down_on_a_closed_port_and_never_shows_the_password(monkeypatch):
    password = "Closed-port-secret"
    port = free_port()
    monkeypatch.setenv("OPS_TEST_PG_DSN", f"postgresql://postgres:{password}@127.0.0.1:{port}/test")
    outcome = probe_once(pg_service())
    assert outcome.status == DOWN
    assert outcome.detail.startswith(f"postgres 127.0.0.1:{port}/test:")
    assert password not in outcome.detail


@pytest.mark.slow("waits out the connect timeout")
def test_it_times_out_when_the_server_never_answers(monkeypatch):
    # Accepts the connection and then says nothing: the connect timeout must end it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    accepting.start()
    monkeypatch.setenv("OPS_TEST_PG_DSN", f"postgresql://postgres:pw12345@127.0.0.1:{port}/test")
    try:
        outcome = probe_once(pg_service(timeout=1))
    finally:
        accepting.join(timeout=5)
        for c in held:
            c.close()
        listener.close()
    assert outcome.status == DOWN
    assert "pw12345" not in outcome.detail
    assert "timeout" in outcome.detail.lower()


@pytest.mark.parametrize(
    ("settings", "env", "message"),
    [
        ({}, {}, r"settings\.dsn_env: is required"),
        ({"dsn_env": "OPS_TEST_PG_UNSET"}, {}, "environment variable OPS_TEST_PG_UNSET is not set"),
        ({"dsn_env": "OPS_TEST_PG_DSN", "query": ""}, {}, r"settings\.query: must be a non-empty string"),
        ({"dsn_env": "OPS_TEST_PG_DSN"}, {"OPS_TEST_PG_DSN": "not a = valid = dsn"}, "config error"),
    ],
)
def test_it_names_the_bad_key_or_variable_in_a_config_error(monkeypatch, settings, env, message):
    monkeypatch.delenv("OPS_TEST_PG_UNSET", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ProbeConfigError, match=message):
        PostgresProbe(settings, timeout=1).run()
    outcome = probe_once(ServiceFactory.build(kind="postgres", settings=settings))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error")


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://ops:pct%zzPassw0rd-secret@127.0.0.1:1/postgres",
        "host=127.0.0.1 port=1 password='pct%zzPassw0rd-secret dbname=postgres",
    ],
    ids=["url-with-bad-percent", "key-value-unterminated-quote"],
)
def test_it_never_shows_a_password_the_dsn_parse_error_quotes(monkeypatch, dsn):
    # Needs no server: the DSN does not even parse. The password must be known before the parse fails.
    monkeypatch.setenv("OPS_TEST_PG_DSN", dsn)
    outcome = probe_once(pg_service())
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error:")
    assert "Passw0rd-secret" not in outcome.detail


# -- issue 14 item 2: scrubbed whole, then cut; and every word of an unquoted key-value password
def _pieces(secret: str, size: int = 8) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def test_it_leaves_no_piece_of_a_long_password_a_config_error_quotes_across_the_cut(monkeypatch):
    # The parse error quotes the whole password; the runner cut it at 500 characters before scrubbing.
    password = "pct%zz" + "0123456789abcdef" * 40
    monkeypatch.setenv("OPS_TEST_PG_DSN", f"postgresql://ops:{password}@127.0.0.1:1/postgres")
    outcome = probe_once(pg_service())
    assert outcome.status == "misconfigured"
    assert "percent-encoded" in outcome.detail and "***" in outcome.detail
    assert [p for p in _pieces(password) if p in outcome.detail] == [], outcome.detail


def test_it_never_shows_a_word_of_an_unquoted_password_with_a_space(monkeypatch):
    # libpq reads `password=abc def` as password `abc` and a key `def` with no "=": its error quotes `def`.
    monkeypatch.setenv("OPS_TEST_PG_DSN", "host=127.0.0.1 port=1 password=abc defsecret dbname=postgres")
    outcome = probe_once(pg_service())
    assert outcome.status == "misconfigured"
    assert 'missing "=" after' in outcome.detail
    assert "defsecret" not in outcome.detail and "abc" not in outcome.detail


def test_it_leaves_no_piece_of_a_long_secret_a_server_error_quotes(monkeypatch):
    # A server (or a pooler in front of one) whose error quotes the password: scrubbed before the cut.
    secret = "0123456789abcdef" * 16
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            while True:
                head = conn.recv(8)
                if len(head) < 8:
                    return
                size = int.from_bytes(head[:4], "big")
                conn.recv(size - 8)
                if head[4:8] == (80877103).to_bytes(4, "big"):  # SSLRequest, GSSENCRequest: no
                    conn.sendall(b"N")
                    continue
                if head[4:8] == (80877104).to_bytes(4, "big"):
                    conn.sendall(b"N")
                    continue
                fields = b"SFATAL\0VFATAL\0C28000\0M" + f'password "{secret}" is not allowed'.encode() + b"\0\0"
                conn.sendall(b"E" + (len(fields) + 4).to_bytes(4, "big") + fields)
                return

    serving = threading.Thread(target=serve, daemon=True)
    serving.start()
    monkeypatch.setenv("OPS_TEST_PG_DSN", f"postgresql://ops:{secret}@127.0.0.1:{port}/test")
    try:
        outcome = probe_once(pg_service())
    finally:
        serving.join(timeout=5)
        listener.close()
    assert outcome.status == DOWN
    assert "is not allowed" in outcome.detail and "***" in outcome.detail
    assert [p for p in _pieces(secret) if p in outcome.detail] == [], outcome.detail
