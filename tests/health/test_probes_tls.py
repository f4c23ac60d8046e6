from __future__ import annotations

import contextlib
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from configfile.config import export_text, import_text, parse
from core.spec import ConfigError
from health.models import Service
from health.probes.base import DEGRADED, DOWN, MISCONFIGURED, UP, ProbeConfigError
from health.probes.tls import MAX_PREAMBLE, TlsProbe
from health.runner import probe_once, run_round
from tests.factories import ServiceFactory
from tests.health.tls_server import Authority, Pem, TlsServer
from tests.servers import TcpServer, free_port, wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


@pytest.fixture
def serve() -> Iterator:
    started: list[TlsServer] = []

    def make(leaf: Pem, **kwargs) -> TlsServer:
        server = TlsServer(leaf, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def tls_service(port: int, timeout: float = 3.0, **settings):
    return ServiceFactory.build(
        kind="tls", settings={"host": "127.0.0.1", "port": port, **settings}, timeout=timeout, degraded_latency_ms=0
    )


def test_it_is_up_with_60_days_left_and_says_who_the_certificate_is(ca, serve):
    server = serve(ca.leaf("web", days=60, cn="web.test", names=("web.test", "localhost")))
    outcome = probe_once(tls_service(server.port, ca_file=str(ca.pem.cert)))
    assert outcome.status == UP, outcome.detail
    assert outcome.detail.startswith("certificate expires in 60 days (")
    assert "subject CN=web.test" in outcome.detail
    assert "issuer CN=opsportal test CA" in outcome.detail
    assert "SANs web.test, localhost, 127.0.0.1" in outcome.detail
    assert outcome.latency_ms is not None and outcome.latency_ms > 0
    assert wait_for(lambda: server.handshakes == 1)  # counted by the server thread, just after


def test_it_is_degraded_with_5_days_left(ca, serve):
    server = serve(ca.leaf("soon", days=5))
    outcome = probe_once(tls_service(server.port, ca_file=str(ca.pem.cert)))
    assert outcome.status == DEGRADED
    assert outcome.detail.startswith("certificate expires in 5 days (")
    assert "under cert_warn_days 14" in outcome.detail


def test_it_follows_the_configured_thresholds(ca, serve):
    server = serve(ca.leaf("soon", days=5))
    ca_file = str(ca.pem.cert)
    assert probe_once(tls_service(server.port, ca_file=ca_file, cert_warn_days=3)).status == UP
    assert probe_once(tls_service(server.port, ca_file=ca_file, cert_warn_days=0)).status == UP
    down = probe_once(tls_service(server.port, ca_file=ca_file, cert_down_days=7))
    assert down.status == DOWN
    assert "certificate expires in 5 days" in down.detail
    assert "under cert_down_days 7" in down.detail


def test_it_is_down_on_an_expired_certificate_and_says_when_it_expired(ca, serve):
    server = serve(ca.leaf("old", days=-3))
    outcome = probe_once(tls_service(server.port, ca_file=str(ca.pem.cert)))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("certificate not trusted (certificate has expired); ")
    assert "certificate expired 3 days ago (" in outcome.detail
    assert "subject CN=localhost" in outcome.detail


def test_it_is_down_on_an_expired_certificate_even_unverified(ca, serve):
    server = serve(ca.leaf("old", days=-3))
    outcome = probe_once(tls_service(server.port, verify_tls=False))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("certificate expired 3 days ago (")


def test_it_is_down_when_the_issuer_is_not_trusted(ca, serve, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", "/nonexistent")  # the system store alone: it knows no test CA
    server = serve(ca.leaf("web", days=60))
    outcome = probe_once(tls_service(server.port))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("certificate not trusted (unable to get local issuer certificate); ")
    assert "certificate expires in 60 days" in outcome.detail
    # Without verification the same endpoint is judged by its dates only.
    assert probe_once(tls_service(server.port, verify_tls=False)).status == UP


def test_it_trusts_the_system_store_which_honours_ssl_cert_file(ca, serve, monkeypatch):
    server = serve(ca.leaf("web", days=60))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.pem.cert))
    outcome = probe_once(tls_service(server.port))
    assert outcome.status == UP, outcome.detail


def test_it_checks_the_server_name(ca, serve):
    server = serve(ca.leaf("web", days=60, names=("web.test",)))
    ca_file = str(ca.pem.cert)
    assert probe_once(tls_service(server.port, ca_file=ca_file, server_name="web.test")).status == UP
    wrong = probe_once(tls_service(server.port, ca_file=ca_file, server_name="other.test"))
    assert wrong.status == DOWN
    assert "certificate not trusted (Hostname mismatch" in wrong.detail
    assert "'other.test'" in wrong.detail


def test_it_is_down_when_nothing_listens():
    port = free_port()
    outcome = probe_once(tls_service(port))
    assert outcome.status == DOWN
    assert outcome.detail == f"connect to 127.0.0.1:{port} failed: Connection refused"


def test_it_is_down_when_the_peer_does_not_speak_tls(tcp_server):
    outcome = probe_once(tls_service(tcp_server.port))
    assert outcome.status == DOWN
    # The server closes at once: an EOF, or a reset when our ClientHello was still unread.
    assert outcome.detail in (
        f"TLS handshake with 127.0.0.1:{tcp_server.port} failed: the peer closed the connection during the handshake"
        f" ({reason})"
        for reason in ("UNEXPECTED_EOF_WHILE_READING", "Connection reset by peer")
    )


def test_it_times_out_when_the_handshake_hangs(ca, serve):
    server = serve(ca.leaf("web", days=60), silent=True)
    start = time.monotonic()
    outcome = probe_once(tls_service(server.port, timeout=0.5))
    elapsed = time.monotonic() - start
    assert outcome.status == DOWN
    assert outcome.detail == f"no TLS handshake with 127.0.0.1:{server.port} within 0.5 s"
    assert elapsed < 2


@pytest.mark.parametrize("protocol", ["smtp", "imap", "postgres"])
def test_it_speaks_starttls_first(ca, serve, protocol):
    server = serve(ca.leaf("mail", days=60), starttls=protocol)
    outcome = probe_once(tls_service(server.port, ca_file=str(ca.pem.cert), starttls=protocol))
    assert outcome.status == UP, outcome.detail
    assert wait_for(lambda: server.handshakes == 1)  # counted by the server thread, just after
    # Without STARTTLS the server's plain-text greeting is no handshake.
    # (Refused, or waited on: an SMTP server reads a line the ClientHello never ends.)
    plain = probe_once(tls_service(server.port, timeout=1, ca_file=str(ca.pem.cert)))
    assert plain.status == DOWN
    assert f"TLS handshake with 127.0.0.1:{server.port}" in plain.detail


def test_it_is_down_when_an_smtp_server_does_not_offer_starttls(ca, serve):
    server = serve(ca.leaf("mail", days=60), starttls="smtp")
    server.starttls_offered = False
    outcome = probe_once(tls_service(server.port, ca_file=str(ca.pem.cert), starttls="smtp"))
    assert outcome.status == DOWN
    assert outcome.detail == "SMTP server does not offer STARTTLS"


def test_it_is_misconfigured_when_the_ca_file_is_missing_or_not_pem(tmp_path):
    port = free_port()
    missing = probe_once(tls_service(port, ca_file=str(tmp_path / "none.pem")))
    assert missing.status == MISCONFIGURED
    assert missing.detail.startswith(f"config error: settings.ca_file: no such file {tmp_path / 'none.pem'}")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    server = TcpServer().start()
    try:
        outcome = probe_once(tls_service(server.port, ca_file=str(junk)))
    finally:
        server.stop()
    assert outcome.status == MISCONFIGURED
    assert outcome.detail.startswith("config error: settings.ca_file: not a usable PEM bundle")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"host": "127.0.0.1"}, r"settings\.port: is required"),
        ({"port": 443}, r"settings\.host: is required"),
        ({"host": "h", "port": 443, "starttls": "ftp"}, r"settings\.starttls: must be one of smtp, imap, postgres"),
        ({"host": "h", "port": 443, "cert_warn_days": -1}, r"settings\.cert_warn_days: must be at least 0"),
        ({"host": "h", "port": 443, "cert_down_days": 14}, r"settings\.cert_down_days: must be less than cert_warn"),
        ({"host": "h", "port": 443, "ca_file": "ca.pem"}, r"settings\.ca_file: must be an absolute path"),
        (
            {"host": "h", "port": 443, "ca_file": "/ca.pem", "verify_tls": False},
            r"settings\.ca_file: has no use with verify_tls = false",
        ),
        ({"host": "h", "port": 443, "verify": True}, r"settings\.verify: unknown key"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        TlsProbe.validate_settings(settings, "settings")
    outcome = probe_once(ServiceFactory.build(kind="tls", settings=settings))
    assert outcome.status == MISCONFIGURED
    assert outcome.detail.startswith("config error: settings.")


def test_it_names_the_bad_key_on_import():
    toml = '[[service]]\nname = "cert"\nkind = "tls"\nhost = "h"\nport = 443\ncert_down_days = 30\n'
    with pytest.raises(ConfigError, match=r"cert_down_days: must be less than cert_warn_days \(14\)"):
        parse(toml)
    with pytest.raises(ProbeConfigError):
        TlsProbe({"host": "h", "port": 443, "starttls": "ftp"}, timeout=1)


def test_it_runs_from_the_config_file_and_round_trips_through_export(ca, serve):
    server = serve(ca.leaf("soon", days=5))
    toml = (
        f'[[service]]\nname = "cert"\nkind = "tls"\nhost = "127.0.0.1"\nport = {server.port}\n'
        f'ca_file = "{ca.pem.cert}"\ncert_warn_days = 30\ncert_down_days = 3\n'
    )
    import_text(toml)
    run_round([Service.objects.get(name="cert")])
    service = Service.objects.get(name="cert")
    assert service.status == DEGRADED, service.last_detail
    assert service.last_detail.startswith("certificate expires in 5 days (")
    exported = export_text()
    assert tomllib.loads(exported)["service"][0]["cert_down_days"] == 3
    Service.objects.all().delete()
    import_text(exported)
    assert Service.objects.get(name="cert").settings == service.settings


def test_it_reads_a_starttls_preamble_only_so_far():
    # An "SMTP server" whose banner never ends: the probe stops at MAX_PREAMBLE bytes, not at the timeout.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def babble() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            while True:
                conn.sendall(b"220-still talking\r\n" * 64)

    thread = threading.Thread(target=babble, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        outcome = probe_once(tls_service(port, timeout=5, starttls="smtp"))
        elapsed = time.monotonic() - start
    finally:
        listener.close()
        thread.join(timeout=5)
    assert outcome.status == DOWN
    assert outcome.detail == f"smtp server at 127.0.0.1:{port} sent more than {MAX_PREAMBLE} bytes"
    assert elapsed < 2
