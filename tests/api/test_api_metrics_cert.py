"""/metrics `opsportal_cert_expiry_seconds`: what the last tls probe read of a real certificate, kept on the row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from health.models import Service
from health.runner import run_round
from tests.factories import make_service
from tests.health.tls_server import Authority, TlsServer

pytestmark = pytest.mark.django_db

DAY = 86400


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


@pytest.fixture
def servers() -> Iterator[list[TlsServer]]:
    started: list[TlsServer] = []
    yield started
    for server in started:
        server.stop()


def expiry_seconds(client, name: str) -> float | None:
    text = client.get("/metrics").content.decode()
    found = re.search(rf'^opsportal_cert_expiry_seconds\{{service="{name}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def test_it_reports_the_seconds_left_of_a_certificate_and_a_negative_figure_once_expired(client, ca, servers):
    soon = TlsServer(ca.leaf("soon", days=5)).start()
    old = TlsServer(ca.leaf("old", days=-3)).start()
    servers += [soon, old]
    for name, server in (("soon", soon), ("old", old)):
        make_service(name, kind="tls", settings={"host": "127.0.0.1", "port": server.port, "ca_file": str(ca.pem.cert)})
    make_service("plain")  # a tcp service reads no certificate: no series for it

    run_round(list(Service.objects.order_by("name")))

    assert Service.objects.get(name="old").status == "down"  # expired: down, and its date still kept
    assert 4.9 * DAY < expiry_seconds(client, "soon") <= 5 * DAY
    assert -3.1 * DAY < expiry_seconds(client, "old") < -2.9 * DAY
    assert expiry_seconds(client, "plain") is None


def test_it_keeps_the_last_date_known_when_a_later_probe_reads_no_certificate(client, ca, servers):
    server = TlsServer(ca.leaf("soon", days=5)).start()
    servers.append(server)
    service = make_service(
        "edge", kind="tls", settings={"host": "127.0.0.1", "port": server.port, "ca_file": str(ca.pem.cert)}
    )
    run_round([service])
    server.stop()
    servers.clear()

    run_round([Service.objects.get(pk=service.pk)])  # nothing listens now: down, no certificate read

    assert Service.objects.get(pk=service.pk).status == "down"
    assert 4.9 * DAY < expiry_seconds(client, "edge") <= 5 * DAY
