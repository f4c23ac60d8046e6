"""The `mysql` probe against a real MariaDB the session starts once (private data dir, socket and port)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from configfile.config import export_text, import_text
from health.models import Service
from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError
from health.probes.mysql import MysqlProbe
from health.runner import probe_once
from tests.factories import ServiceFactory
from tests.health.mysql_server import DATABASE, PASSWORD, USER, MariaDB, missing
from tests.health.tcp_server import hold, scripted
from tests.servers import free_port

pytestmark = pytest.mark.django_db

VERSION = r"\([\d.]+-MariaDB[^)]*\)"


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    server = MariaDB(tmp_path_factory.mktemp("mariadb")).start()
    yield server
    server.stop()


def my_service(timeout: float = 3.0, degraded_latency_ms: int = 2000, **settings: Any) -> Any:
    return ServiceFactory.build(
        kind="mysql",
        settings={"dsn_env": "OPS_TEST_MY_DSN", **settings},
        timeout=timeout,
        degraded_latency_ms=degraded_latency_ms,
    )


def test_it_is_up_against_a_real_mariadb(mariadb, monkeypatch):
    monkeypatch.setenv("OPS_TEST_MY_DSN", mariadb.dsn())
    outcome = probe_once(my_service())
    assert outcome.status == UP, outcome.detail
    assert re.fullmatch(rf"mysql 127\.0\.0\.1:{mariadb.port}/{DATABASE} answered {VERSION}", outcome.detail)
    assert PASSWORD not in outcome.detail


def test_it_runs_the_configured_query(mariadb, monkeypatch):
    monkeypatch.setenv("OPS_TEST_MY_DSN", mariadb.dsn())
    up = probe_once(my_service(query="SELECT COUNT(*) FROM information_schema.tables"))
    bad = probe_once(my_service(query="SELEKT 1"))
    missing_table = probe_once(my_service(query="SELECT * FROM no_such_table"))
    assert up.status == UP
    assert bad.status == DOWN
    assert bad.detail.startswith(f"mysql 127.0.0.1:{mariadb.port}/{DATABASE}: (1064) You have an error in your SQL")
    assert missing_table.status == DOWN
    assert f"(1146) Table '{DATABASE}.no_such_table' doesn't exist" in missing_table.detail


def test_it_takes_the_password_from_password_env(mariadb, monkeypatch):
    monkeypatch.setenv("OPS_TEST_MY_DSN", f"mysql://{USER}@127.0.0.1:{mariadb.port}/{DATABASE}")
    monkeypatch.setenv("OPS_TEST_MY_PW", PASSWORD)
    with_pw = probe_once(my_service(password_env="OPS_TEST_MY_PW"))
    without = probe_once(my_service())
    assert with_pw.status == UP, with_pw.detail
    assert without.status == DOWN
    assert f"(1045) Access denied for user '{USER}'@'127.0.0.1' (using password: NO)" in without.detail


def test_it_is_down_for_a_wrong_password_and_never_shows_it(mariadb, monkeypatch):
    wrong = "Wrong%20secret-pw-77"  # URL-encoded in the DSN: neither form may show
    monkeypatch.setenv("OPS_TEST_MY_DSN", mariadb.dsn(password=wrong))
    outcome = probe_once(my_service())
    assert outcome.status == DOWN
    assert f"(1045) Access denied for user '{USER}'@'127.0.0.1' (using password: YES)" in outcome.detail
    assert wrong not in outcome.detail and "Wrong secret-pw-77" not in outcome.detail


def test_it_is_down_for_a_database_it_may_not_use(mariadb, monkeypatch):
    monkeypatch.setenv("OPS_TEST_MY_DSN", mariadb.dsn(database="mysql"))
    outcome = probe_once(my_service())
    assert outcome.status == DOWN
    assert f"(1044) Access denied for user '{USER}'@'127.0.0.1' to database 'mysql'" in outcome.detail


def test_it_connects_through_a_unix_socket_given_in_the_dsn(mariadb, monkeypatch):
    monkeypatch.setenv("OPS_TEST_MY_DSN", f"mysql://root@localhost/?unix_socket={mariadb.socket}")
    outcome = probe_once(my_service())
    assert outcome.status == UP, outcome.detail
    assert outcome.detail.startswith(f"mysql {mariadb.socket}/ answered")


def test_it_is_degraded_when_the_query_is_slow(mariadb, monkeypatch):
    monkeypatch.setenv("OPS_TEST_MY_DSN", mariadb.dsn())
    outcome = probe_once(my_service(degraded_latency_ms=100, query="SELECT SLEEP(0.3)"))
    assert outcome.status == DEGRADED
    assert outcome.latency_ms >= 300


def test_it_times_out_a_slow_query(mariadb, monkeypatch):
    monkeypatch.setenv("OPS_TEST_MY_DSN", mariadb.dsn())
    start = time.monotonic()
    outcome = probe_once(my_service(timeout=1, query="SELECT SLEEP(10) FROM DUAL"))
    elapsed = time.monotonic() - start
    assert outcome.status == DOWN
    # The server stops it (max_statement_time, set from the timeout); the client's read timeout is the backstop.
    assert outcome.detail == (
        f"mysql 127.0.0.1:{mariadb.port}/{DATABASE}: "
        "(1969) Query execution was interrupted (max_statement_time exceeded)"
    )
    assert elapsed < 3


def test_it_is_down_on_a_closed_port_and_never_shows_the_password(monkeypatch):
    port = free_port()
    monkeypatch.setenv("OPS_TEST_MY_DSN", f"mysql://ops:Closed-port-pw@127.0.0.1:{port}/app")
    outcome = probe_once(my_service())
    assert outcome.status == DOWN
    assert outcome.detail.startswith(f"mysql 127.0.0.1:{port}/app: (2003) Can't connect to MySQL server")
    assert "Connection refused" in outcome.detail
    assert "Closed-port-pw" not in outcome.detail


def test_it_times_out_when_the_server_never_answers(monkeypatch):
    with scripted(hold) as server:
        monkeypatch.setenv("OPS_TEST_MY_DSN", f"mysql://ops:Silent-pw-1@127.0.0.1:{server.port}/app")
        start = time.monotonic()
        outcome = probe_once(my_service(timeout=0.5))
        elapsed = time.monotonic() - start
    assert outcome.status == DOWN
    assert (
        outcome.detail
        == f"mysql 127.0.0.1:{server.port}/app: (2013) Lost connection to MySQL server during query (timed out)"
    )
    assert "Silent-pw-1" not in outcome.detail
    assert elapsed < 2


@pytest.mark.parametrize(
    ("settings", "dsn", "message"),
    [
        ({}, None, r"settings\.dsn_env: is required"),
        ({"dsn_env": "OPS_TEST_MY_UNSET"}, None, "environment variable OPS_TEST_MY_UNSET is not set"),
        ({"dsn_env": "OPS_TEST_MY_DSN", "query": ""}, "mysql://a@h/d", r"settings\.query: must be a non-empty"),
        ({"dsn_env": "OPS_TEST_MY_DSN"}, "postgres://a:pw-secret-1@h/d", "the DSN must start with mysql://"),
        ({"dsn_env": "OPS_TEST_MY_DSN"}, "mysql://h:3306/d", "the DSN names no user"),
        ({"dsn_env": "OPS_TEST_MY_DSN"}, "mysql://a:pw-secret-1@h/d?ssl=1", "unknown DSN parameter 'ssl'"),
        ({"dsn_env": "OPS_TEST_MY_DSN"}, "mysql://a:pw-secret-1@h:99999/d", "bad DSN: Port out of range"),
    ],
)
def test_it_names_the_bad_key_or_variable_in_a_config_error(monkeypatch, settings, dsn, message):
    monkeypatch.delenv("OPS_TEST_MY_UNSET", raising=False)
    if dsn is not None:
        monkeypatch.setenv("OPS_TEST_MY_DSN", dsn)
    with pytest.raises(ProbeConfigError, match=message):
        MysqlProbe(settings, timeout=1).run()
    outcome = probe_once(ServiceFactory.build(kind="mysql", settings=settings))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert re.search(message, outcome.detail), outcome.detail
    assert "pw-secret-1" not in outcome.detail


ROUND_TRIP = """
[[service]]
name = "legacy-db"
kind = "mysql"
dsn_env = "LEGACY_MYSQL_DSN"
password_env = "LEGACY_MYSQL_PASSWORD"
query = "SELECT 1 FROM DUAL"
"""


def test_it_round_trips_through_importconfig_and_exportconfig():
    import_text(ROUND_TRIP)
    before = {s.name: s.settings for s in Service.objects.filter(kind="mysql")}
    exported = export_text()
    Service.objects.all().delete()
    import_text(exported)
    assert {s.name: s.settings for s in Service.objects.filter(kind="mysql")} == before
    assert next(iter(before.values())) == {
        "dsn_env": "LEGACY_MYSQL_DSN",
        "password_env": "LEGACY_MYSQL_PASSWORD",
        "query": "SELECT 1 FROM DUAL",
    }
