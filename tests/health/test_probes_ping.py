"""The `ping` probe: real ICMP echo to loopback addresses only (127.0.0.0/8), never another target."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from configfile.config import export_text, import_text
from core.spec import ConfigError
from health.models import Service
from health.probes.base import DEGRADED, UP, ProbeConfigError
from health.probes.ping import PingProbe
from health.runner import probe_once
from tests.factories import ServiceFactory

ROOT = Path(__file__).resolve().parents[2]


def probe(timeout: float = 2, **settings: object) -> PingProbe:
    return PingProbe(PingProbe.validate_settings({"host": "127.0.0.1", **settings}, "settings"), timeout=timeout)


def test_it_is_up_when_127_0_0_1_answers_with_no_loss():
    outcome = probe(count=3, interval_ms=10).run()
    assert outcome.status == UP
    assert "3 sent, 3 received, 0% loss" in outcome.detail
    assert re.search(r"rtt min/avg/max [\d.]+/[\d.]+/[\d.]+ ms", outcome.detail), outcome.detail
    assert outcome.latency_ms is not None and 0 <= outcome.latency_ms < 1000


def test_it_gets_answers_from_an_unconfigured_address_in_127_8_as_linux_does():
    # Linux routes the whole 127.0.0.0/8 to the loopback device (the `local` routing table), so an address
    # no interface carries still answers: the documented behaviour, asserted here.
    if not sys.platform.startswith("linux"):
        pytest.skip("the whole-127/8 answer is Linux behaviour")
    route = subprocess.run(["ip", "route", "show", "table", "local"], capture_output=True, text=True, check=False)
    if route.returncode == 0:
        assert "127.0.0.0/8" in route.stdout
    outcome = probe(host="127.8.9.10", count=2, interval_ms=10).run()
    assert outcome.status == UP and "ping 127.8.9.10: 2 sent, 2 received, 0% loss" in outcome.detail


def test_it_is_degraded_above_rtt_warn_ms():
    outcome = probe(count=1, rtt_warn_ms=0).run()
    assert outcome.status == DEGRADED and "average rtt above rtt_warn_ms 0" in outcome.detail


def test_it_refuses_more_packets_than_the_timeout_holds():
    with pytest.raises(ProbeConfigError, match=r"settings\.count: 5 packets 500 ms apart do not fit in the timeout"):
        probe(timeout=1, count=5, interval_ms=500).run()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_it_says_what_a_non_root_install_needs_when_no_socket_opens():
    # A child without CAP_NET_RAW; the datagram socket is allowed only when ping_group_range holds group 0.
    low, high = map(int, Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    if low <= 0 <= high:
        pytest.skip("this kernel lets group 0 open ICMP datagram sockets (ping_group_range)")
    code = (
        "from health.probes.ping import PingProbe\n"
        "from health.probes.base import ProbeConfigError\n"
        "try:\n"
        "    PingProbe(PingProbe.validate_settings({'host': '127.0.0.1', 'count': 1}, 's'), timeout=1).run()\n"
        "except ProbeConfigError as exc:\n"
        "    print(exc)\n"
    )
    argv = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-c", code]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=30, check=False)
    assert "cannot open an ICMP socket" in done.stdout, done.stderr
    assert "net.ipv4.ping_group_range" in done.stdout and "CAP_NET_RAW" in done.stdout


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, r"settings\.host: is required"),
        ({"host": "127.0.0.1", "count": 0}, r"settings\.count: must be a positive integer"),
        ({"host": "127.0.0.1", "loss_warn": 50, "loss_max": 20}, r"settings\.loss_warn: must be at most loss_max"),
        ({"host": "127.0.0.1", "loss_max": 101}, r"settings\.loss_max: must be at most 100"),
        ({"host": "127.0.0.1", "ttl": 3}, r"settings\.ttl: unknown key"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        PingProbe.validate_settings(settings, "settings")
    outcome = probe_once(ServiceFactory.build(kind="ping", settings=settings))
    assert outcome.status == "misconfigured"
    assert re.search(message, outcome.detail), outcome.detail


ROUND_TRIP = """
[[service]]
name = "gateway"
kind = "ping"
host = "127.0.0.1"
count = 5
interval_ms = 100
loss_warn = 20
loss_max = 60
rtt_warn_ms = 50
"""


@pytest.mark.django_db
def test_it_round_trips_through_importconfig_and_exportconfig_and_probes():
    import_text(ROUND_TRIP)
    before = {s.name: s.settings for s in Service.objects.filter(kind="ping")}
    exported = export_text()
    Service.objects.all().delete()
    import_text(exported)
    assert {s.name: s.settings for s in Service.objects.filter(kind="ping")} == before
    assert before["gateway"] == {
        "host": "127.0.0.1",
        "count": 5,
        "interval_ms": 100,
        "loss_warn": 20,
        "loss_max": 60,
        "rtt_warn_ms": 50,
    }
    outcome = probe_once(Service.objects.get(name="gateway"))
    assert outcome.status == UP and "5 sent, 5 received" in outcome.detail
