from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator

import dns.name
import pytest

from configfile.config import export_text, import_text, parse
from core.spec import ConfigError
from health.models import Service
from health.probes.base import DOWN, MISCONFIGURED, UP, ProbeConfigError
from health.probes.dns import DnsProbe
from health.runner import probe_once, run_round
from tests.factories import ServiceFactory
from tests.health.dns_server import DnsServer
from tests.servers import free_port

pytestmark = pytest.mark.django_db

ZONE = {
    ("web.test.", "A"): ["192.0.2.10", "192.0.2.11"],
    ("web.test.", "AAAA"): ["2001:db8::1"],
    ("web.test.", "MX"): ["10 mail.web.test.", "20 backup.web.test."],
    ("web.test.", "TXT"): ['"v=spf1 -all"'],
    ("bare.test.", "A"): ["192.0.2.20"],
    ("10.2.0.192.in-addr.arpa.", "PTR"): ["web.test."],
}


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer(ZONE).start()
    yield server
    server.stop()


def dns_service(server: DnsServer | None, query: str, timeout: float = 2.0, **settings):
    where = {"server": "127.0.0.1", "port": server.port if server else free_port()}
    return ServiceFactory.build(
        kind="dns", settings={"query": query, **where, **settings}, timeout=timeout, degraded_latency_ms=0
    )


def test_it_is_up_and_shows_the_answers(dns_server):
    outcome = probe_once(dns_service(dns_server, "web.test"))
    assert outcome.status == UP, outcome.detail
    assert outcome.detail == "A web.test: 192.0.2.10, 192.0.2.11"
    assert outcome.latency_ms is not None and outcome.latency_ms > 0
    assert dns_server.queries == [("web.test.", "A")]


def test_it_needs_every_expected_value(dns_server):
    assert probe_once(dns_service(dns_server, "web.test", expect=["192.0.2.11", "192.0.2.10"])).status == UP
    outcome = probe_once(dns_service(dns_server, "web.test", expect=["192.0.2.10", "192.0.2.99"]))
    assert outcome.status == DOWN
    assert outcome.detail == "A web.test: 192.0.2.10, 192.0.2.11; missing 192.0.2.99"


def test_it_checks_mx_records_by_exchange_or_whole(dns_server):
    outcome = probe_once(dns_service(dns_server, "web.test", record_type="MX", expect=["mail.web.test"]))
    assert outcome.status == UP, outcome.detail
    assert outcome.detail == "MX web.test: 10 mail.web.test., 20 backup.web.test."
    whole = dns_service(dns_server, "web.test", record_type="MX", expect=["20 Backup.Web.Test."])
    assert probe_once(whole).status == UP
    missing = probe_once(dns_service(dns_server, "web.test", record_type="MX", expect=["mx.other.test"]))
    assert missing.status == DOWN
    assert missing.detail.endswith("; missing mx.other.test")


def test_it_compares_txt_aaaa_and_ptr_as_written(dns_server):
    assert probe_once(dns_service(dns_server, "web.test", record_type="TXT", expect=["v=spf1 -all"])).status == UP
    aaaa = dns_service(dns_server, "web.test", record_type="AAAA", expect=["2001:DB8:0::0001"])
    assert probe_once(aaaa).status == UP
    ptr = probe_once(dns_service(dns_server, "192.0.2.10", record_type="PTR", expect=["web.test"]))
    assert ptr.status == UP, ptr.detail
    assert ptr.detail == "PTR 10.2.0.192.in-addr.arpa: web.test."


def test_it_is_down_when_the_name_does_not_exist(dns_server):
    outcome = probe_once(dns_service(dns_server, "nothing.test"))
    assert outcome.status == DOWN
    assert outcome.detail == f"nothing.test does not exist (NXDOMAIN) via 127.0.0.1:{dns_server.port}"


def test_it_is_up_when_a_name_that_must_not_exist_does_not(dns_server):
    outcome = probe_once(dns_service(dns_server, "nothing.test", expect_rcode="NXDOMAIN"))
    assert outcome.status == UP
    assert outcome.detail == "nothing.test does not exist (NXDOMAIN), as expected"
    exists = probe_once(dns_service(dns_server, "bare.test", expect_rcode="NXDOMAIN"))
    assert exists.status == DOWN
    assert exists.detail == "bare.test exists (A: 192.0.2.20), expected NXDOMAIN"


def test_it_is_down_on_an_empty_answer(dns_server):
    outcome = probe_once(dns_service(dns_server, "bare.test", record_type="MX"))
    assert outcome.status == DOWN
    assert outcome.detail == f"no MX records for bare.test (NOERROR, empty answer) via 127.0.0.1:{dns_server.port}"


def test_it_is_down_on_servfail(dns_server):
    dns_server.servfail.add(dns.name.from_text("web.test."))
    outcome = probe_once(dns_service(dns_server, "web.test"))
    assert outcome.status == DOWN
    port = dns_server.port
    assert outcome.detail == f"no server answered A web.test via 127.0.0.1:{port}: 127.0.0.1:{port} SERVFAIL"


def test_it_times_out_when_the_server_is_silent(dns_server):
    dns_server.silent = True
    start = time.monotonic()
    outcome = probe_once(dns_service(dns_server, "web.test", timeout=0.5))
    elapsed = time.monotonic() - start
    assert outcome.status == DOWN
    assert outcome.detail == f"no DNS answer for web.test via 127.0.0.1:{dns_server.port} within 0.5 s"
    assert elapsed < 2


def test_it_is_down_when_nothing_listens():
    service = dns_service(None, "web.test", timeout=1)
    outcome = probe_once(service)
    assert outcome.status == DOWN
    # Over UDP a closed port is silence: the lookup waits out its timeout.
    assert outcome.detail == f"no DNS answer for web.test via 127.0.0.1:{service.settings['port']} within 1 s"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, r"settings\.query: is required"),
        ({"query": "web.test", "record_type": "ANY"}, r"settings\.record_type: must be one of A, AAAA, CNAME"),
        ({"query": "web.test", "server": "dns.example"}, r"settings\.server: must be an IP address"),
        ({"query": "web.test", "port": 0}, r"settings\.port: must be a positive integer"),
        (
            {"query": "web.test", "expect_rcode": "SERVFAIL"},
            r"settings\.expect_rcode: must be one of NOERROR, NXDOMAIN",
        ),
        (
            {"query": "web.test", "expect": ["192.0.2.1"], "expect_rcode": "NXDOMAIN"},
            r"settings\.expect: has no use with expect_rcode = NXDOMAIN",
        ),
        ({"query": "web..test"}, r"settings\.query: is not a valid DNS name"),
        ({"query": "web.test", "expect": "192.0.2.1"}, r"settings\.expect: must be a list of non-empty strings"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        DnsProbe.validate_settings(settings, "settings")
    outcome = probe_once(ServiceFactory.build(kind="dns", settings=settings))
    assert outcome.status == MISCONFIGURED
    assert outcome.detail.startswith("config error: settings.")


def test_it_names_the_bad_key_on_import():
    toml = '[[service]]\nname = "names"\nkind = "dns"\nquery = "web.test"\nserver = "resolver.local"\n'
    with pytest.raises(ConfigError, match=r"server: must be an IP address"):
        parse(toml)
    with pytest.raises(ProbeConfigError):
        DnsProbe({"query": "web.test", "record_type": "ANY"}, timeout=1)


def test_it_runs_from_the_config_file_and_round_trips_through_export(dns_server):
    toml = (
        '[[service]]\nname = "names"\nkind = "dns"\nquery = "web.test"\nrecord_type = "MX"\n'
        f'server = "127.0.0.1"\nport = {dns_server.port}\nexpect = ["mail.web.test"]\n'
    )
    import_text(toml)
    run_round([Service.objects.get(name="names")])
    service = Service.objects.get(name="names")
    assert service.status == UP
    assert service.last_detail == "MX web.test: 10 mail.web.test., 20 backup.web.test."
    exported = export_text()
    assert tomllib.loads(exported)["service"][0]["expect"] == ["mail.web.test"]
    Service.objects.all().delete()
    import_text(exported)
    assert Service.objects.get(name="names").settings == service.settings
