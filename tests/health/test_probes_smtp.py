"""The `smtp` probe against a loopback aiosmtpd server, one that refuses with a 554 banner, and a closed port."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest

from configfile.config import export_text, import_text
from core.spec import ConfigError
from health.models import Service
from health.probes.base import DOWN, UP
from health.probes.smtp import SmtpProbe
from health.runner import probe_once
from tests.factories import ServiceFactory
from tests.health.redis_server import make_certs
from tests.health.smtp_server import IDENT, SERVER_NAME, smtp_server
from tests.health.tcp_server import hold, read_line, scripted
from tests.servers import free_port

pytestmark = pytest.mark.django_db


def smtp_service(port: int, timeout: float = 3.0, **settings: Any) -> Any:
    return ServiceFactory.build(kind="smtp", settings={"host": "127.0.0.1", "port": port, **settings}, timeout=timeout)


def test_it_is_up_with_the_banner_in_the_detail():
    with smtp_server() as server:
        outcome = probe_once(smtp_service(server.port))
    assert outcome.status == UP, outcome.detail
    assert outcome.detail == f"smtp 127.0.0.1:{server.port}: 220 {SERVER_NAME} {IDENT}"
    assert outcome.latency_ms > 0


def test_it_upgrades_with_starttls_and_checks_the_certificate(tmp_path):
    certs = make_certs(tmp_path / "certs")
    with smtp_server(certs) as server:
        trusted = probe_once(smtp_service(server.port, starttls=True, ca_file=str(certs.ca)))
        untrusted = probe_once(smtp_service(server.port, starttls=True))
        unverified = probe_once(smtp_service(server.port, starttls=True, verify_tls=False))
    assert trusted.status == UP, trusted.detail
    assert re.fullmatch(
        rf"smtp 127\.0\.0\.1:{server.port}: 220 {re.escape(SERVER_NAME)} {IDENT}; STARTTLS ok \(TLSv1\.[23]\)",
        trusted.detail,
    ), trusted.detail
    assert untrusted.status == DOWN
    assert untrusted.detail == (
        f"smtp 127.0.0.1:{server.port}: TLS certificate not trusted: unable to get local issuer certificate"
    )
    assert unverified.status == UP, unverified.detail


def test_it_checks_the_host_name_against_the_certificate(tmp_path):
    certs = make_certs(tmp_path / "certs")  # for 127.0.0.1 and localhost only
    with smtp_server(certs) as server:
        by_ip = probe_once(smtp_service(server.port, starttls=True, ca_file=str(certs.ca)))
        # localhost resolves to the loopback the server listens on, and the certificate names it too.
        by_name = probe_once(
            ServiceFactory.build(
                kind="smtp",
                settings={"host": "localhost", "port": server.port, "starttls": True, "ca_file": str(certs.ca)},
                timeout=3,
            )
        )
    other = make_certs(tmp_path / "other", names=("mail.example.test",))
    with smtp_server(other) as server:
        mismatch = probe_once(smtp_service(server.port, starttls=True, ca_file=str(other.ca)))
    assert by_ip.status == UP, by_ip.detail
    assert by_name.status == UP, by_name.detail
    assert mismatch.status == DOWN
    assert "TLS certificate not trusted: IP address mismatch" in mismatch.detail, mismatch.detail


def test_it_is_down_when_starttls_is_wanted_but_not_offered():
    with smtp_server() as server:
        outcome = probe_once(smtp_service(server.port, starttls=True, verify_tls=False))
    assert outcome.status == DOWN
    assert outcome.detail == f"smtp 127.0.0.1:{server.port}: the server does not offer STARTTLS"


def test_it_is_down_when_the_server_refuses_with_a_554_banner():
    def refuse(conn: socket.socket) -> None:
        conn.sendall(b"554 5.3.2 mx.example.test no service for you\r\n")
        read_line(conn)

    with scripted(refuse) as server:
        outcome = probe_once(smtp_service(server.port))
    assert outcome.status == DOWN
    assert outcome.detail == f"smtp 127.0.0.1:{server.port}: refused with 554 5.3.2 mx.example.test no service for you"


def test_it_is_down_when_ehlo_is_refused():
    def no_ehlo(conn: socket.socket) -> None:
        conn.sendall(b"220 old.example.test ready\r\n")
        read_line(conn)
        conn.sendall(b"502 5.5.1 EHLO not implemented\r\n")
        read_line(conn)

    with scripted(no_ehlo) as server:
        outcome = probe_once(smtp_service(server.port))
    assert outcome.status == DOWN
    assert outcome.detail == (
        f"smtp 127.0.0.1:{server.port}: EHLO answered 502 5.5.1 EHLO not implemented (banner old.example.test ready)"
    )


def test_it_is_down_when_the_server_hangs_up_at_once():
    with scripted(lambda conn: None) as server:
        outcome = probe_once(smtp_service(server.port))
    assert outcome.status == DOWN
    assert outcome.detail.startswith(f"smtp 127.0.0.1:{server.port}: server closed the connection")


def test_it_is_down_on_a_closed_port():
    port = free_port()
    outcome = probe_once(smtp_service(port))
    assert outcome.status == DOWN
    assert outcome.detail == f"smtp 127.0.0.1:{port}: connection failed: Connection refused"


def test_it_times_out_when_no_banner_comes():
    with scripted(hold) as server:
        start = time.monotonic()
        outcome = probe_once(smtp_service(server.port, timeout=0.5))
        elapsed = time.monotonic() - start
    assert outcome.status == DOWN
    assert outcome.detail == f"smtp 127.0.0.1:{server.port}: no answer within 0.5 s"
    assert elapsed < 2


def test_it_says_the_helo_name_it_is_given_and_quits():
    said: list[bytes] = []

    def record(conn: socket.socket) -> None:
        conn.sendall(b"220 rec.example.test ESMTP\r\n")
        said.append(read_line(conn))
        conn.sendall(b"250 rec.example.test\r\n")
        said.append(read_line(conn))
        conn.sendall(b"221 bye\r\n")

    with scripted(record) as server:
        outcome = probe_once(smtp_service(server.port, helo="probe.opsportal.test"))
    assert outcome.status == UP, outcome.detail
    assert said == [b"ehlo probe.opsportal.test\r\n", b"quit\r\n"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, r"settings\.host: is required"),
        ({"host": "127.0.0.1", "port": 70000}, r"settings\.port: must be at most 65535"),
        ({"host": "127.0.0.1", "starttls": "yes"}, r"settings\.starttls: must be true or false"),
        ({"host": "127.0.0.1", "ca_file": "/etc/ssl/ca.pem"}, r"settings\.ca_file: applies only with starttls = true"),
        ({"host": "127.0.0.1", "verify_tls": False}, r"settings\.verify_tls: applies only with starttls = true"),
        (
            {"host": "127.0.0.1", "starttls": True, "verify_tls": False, "ca_file": "/x.pem"},
            r"settings\.ca_file: is not used with verify_tls = false",
        ),
        ({"host": "127.0.0.1", "tls": True}, r"settings\.tls: unknown key"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        SmtpProbe.validate_settings(settings, "settings")
    outcome = probe_once(ServiceFactory.build(kind="smtp", settings=settings))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert re.search(message, outcome.detail), outcome.detail


def test_it_is_misconfigured_when_the_ca_file_is_missing_or_not_a_bundle(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    missing = probe_once(smtp_service(free_port(), starttls=True, ca_file=str(tmp_path / "missing.pem")))
    bad = probe_once(smtp_service(free_port(), starttls=True, ca_file=str(junk)))
    assert missing.status == "misconfigured"
    assert f"settings.ca_file: cannot read {tmp_path / 'missing.pem'}" in missing.detail
    assert bad.status == "misconfigured"
    assert "settings.ca_file: not a CA bundle" in bad.detail


ROUND_TRIP = """
[[service]]
name = "mail"
kind = "smtp"
host = "mail.example.org"
port = 587
starttls = true
verify_tls = true
helo = "ops.example.org"
"""


def test_it_round_trips_through_importconfig_and_exportconfig():
    import_text(ROUND_TRIP)
    before = {s.name: s.settings for s in Service.objects.filter(kind="smtp")}
    exported = export_text()
    Service.objects.all().delete()
    import_text(exported)
    assert {s.name: s.settings for s in Service.objects.filter(kind="smtp")} == before
    assert next(iter(before.values())) == {
        "host": "mail.example.org",
        "port": 587,
        "starttls": True,
        "verify_tls": True,
        "helo": "ops.example.org",
    }
