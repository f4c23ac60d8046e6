"""The http probe of an https:// URL: the peer certificate's days left, its thresholds, `ca_file`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.spec import ConfigError
from health.probes.base import DEGRADED, DOWN, MISCONFIGURED, UP
from health.probes.http import HttpProbe
from health.runner import probe_once
from tests.factories import ServiceFactory
from tests.health.tls_server import Authority, Pem, https_server
from tests.servers import HttpServer, Reply

pytestmark = pytest.mark.django_db
# verify_tls = false is the test's own choice here, as it is a user's.
unverified_ok = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


@pytest.fixture
def serve() -> Iterator:
    started: list[HttpServer] = []

    def make(leaf: Pem) -> HttpServer:
        server = https_server(leaf)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def http_service(url: str, **settings):
    return ServiceFactory.build(kind="http", settings={"url": url, **settings}, timeout=3, degraded_latency_ms=0)


def test_it_reports_the_days_left_of_an_https_certificate(ca, serve):
    server = serve(ca.leaf("web", days=60))
    outcome = probe_once(http_service(server.url + "/health", ca_file=str(ca.pem.cert)))
    assert outcome.status == UP, outcome.detail
    assert outcome.detail.startswith("HTTP 200; certificate expires in 60 days (")
    assert server.requests[0]["path"] == "/health"
    # The next probe reuses the pooled connection and still reads its certificate.
    again = probe_once(http_service(server.url, method="HEAD", ca_file=str(ca.pem.cert)))
    assert again.detail.startswith("HTTP 200; certificate expires in 60 days (")


def test_it_is_degraded_with_5_days_left(ca, serve):
    server = serve(ca.leaf("soon", days=5))
    outcome = probe_once(http_service(server.url, ca_file=str(ca.pem.cert)))
    assert outcome.status == DEGRADED
    assert outcome.detail.startswith("HTTP 200; certificate expires in 5 days (")
    assert outcome.detail.endswith("under cert_warn_days 14")
    assert probe_once(http_service(server.url, ca_file=str(ca.pem.cert), cert_warn_days=5)).status == UP


def test_it_is_down_under_cert_down_days(ca, serve):
    server = serve(ca.leaf("soon", days=5))
    outcome = probe_once(http_service(server.url, ca_file=str(ca.pem.cert), cert_down_days=7))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("HTTP 200; certificate expires in 5 days (")
    assert outcome.detail.endswith("under cert_down_days 7")


@unverified_ok
def test_it_is_down_on_an_expired_certificate(ca, serve):
    server = serve(ca.leaf("old", days=-3))
    outcome = probe_once(http_service(server.url, ca_file=str(ca.pem.cert)))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("TLS error: ")
    assert "certificate has expired" in outcome.detail
    # Unverified, the answer arrives, and the date alone makes it down.
    unverified = probe_once(http_service(server.url, verify_tls=False))
    assert unverified.status == DOWN
    assert unverified.detail.startswith("HTTP 200; certificate expired 3 days ago (")


@unverified_ok
def test_it_is_down_when_the_issuer_is_not_trusted(ca, serve, monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    server = serve(ca.leaf("web", days=60))
    outcome = probe_once(http_service(server.url))
    assert outcome.status == DOWN
    assert "certificate verify failed" in outcome.detail
    assert probe_once(http_service(server.url, verify_tls=False)).status == UP


def test_it_judges_the_certificate_only_after_the_answer(ca, serve):
    server = serve(ca.leaf("soon", days=5))
    server.reply = Reply(status=503)
    outcome = probe_once(http_service(server.url, ca_file=str(ca.pem.cert)))
    assert outcome.status == DOWN
    assert outcome.detail == "HTTP 503 (expected 2xx)"


def test_it_reads_no_certificate_over_plain_http(http_server):
    outcome = probe_once(http_service(http_server.url, cert_down_days=7, cert_warn_days=3650))
    assert outcome.status == UP
    assert outcome.detail == "HTTP 200"


def test_it_is_misconfigured_when_the_ca_file_is_missing(tmp_path, http_server):
    outcome = probe_once(http_service(http_server.url, ca_file=str(tmp_path / "none.pem")))
    assert outcome.status == MISCONFIGURED
    assert outcome.detail.startswith(f"config error: settings.ca_file: no such file {tmp_path / 'none.pem'}")
    assert http_server.requests == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ca_file": "ca.pem"}, r"settings\.ca_file: must be an absolute path"),
        ({"ca_file": "/ca.pem", "verify_tls": False}, r"settings\.ca_file: has no use with verify_tls = false"),
        ({"cert_warn_days": 7, "cert_down_days": 7}, r"settings\.cert_down_days: must be less than cert_warn_days"),
        ({"cert_warn_days": "7"}, r"settings\.cert_warn_days: must be an integer"),
        ({"cert_down_days": 4000}, r"settings\.cert_down_days: must be at most 3650"),
    ],
)
def test_it_names_the_bad_certificate_key(settings, message):
    full = {"url": "https://127.0.0.1:1/", **settings}
    with pytest.raises(ConfigError, match=message):
        HttpProbe.validate_settings(full, "settings")
    outcome = probe_once(ServiceFactory.build(kind="http", settings=full))
    assert outcome.status == MISCONFIGURED
    assert outcome.detail.startswith("config error: settings.")
