"""The `system` probe against this host's real CPU, memory and disk figures."""

from __future__ import annotations

import pytest

from health.probes.base import DEGRADED, DOWN, UP, ProbeConfigError
from health.probes.system import SystemProbe
from health.runner import probe_once
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db

# Usage can never be above 100 %, so these thresholds can never trip.
NEVER = {"cpu_warn": 100, "memory_warn": 100, "memory_max": 100, "disk_warn": 100, "disk_max": 100}


def system_service(**settings):
    return ServiceFactory.build(kind="system", settings={**NEVER, **settings}, timeout=2)


def test_it_is_up_below_every_threshold():
    outcome = probe_once(system_service())
    assert outcome.status == UP
    assert outcome.detail.startswith("cpu ")
    assert "memory " in outcome.detail and "disk " in outcome.detail


def test_it_is_degraded_above_a_warning():
    outcome = probe_once(system_service(disk_warn=1))
    assert outcome.status == DEGRADED
    assert outcome.detail.startswith("disk above warning: cpu ")


def test_it_is_down_above_a_max():
    outcome = probe_once(system_service(disk_max=1, memory_max=1))
    assert outcome.status == DOWN
    assert outcome.detail.startswith("memory, disk above limit: ")


def test_it_reads_the_disk_of_the_given_path(tmp_path):
    assert probe_once(system_service(disk_path=str(tmp_path), disk_warn=1)).status == DEGRADED
    missing = probe_once(system_service(disk_path=str(tmp_path / "no" / "such" / "dir")))
    assert missing.status == DOWN
    assert missing.detail.startswith(f"cannot read usage of {tmp_path}/no/such/dir")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"disk_warn": 0}, r"settings\.disk_warn: must be at least 1"),
        ({"memory_max": 101}, r"settings\.memory_max: must be at most 100"),
        ({"cpu_max": "90"}, r"settings\.cpu_max: must be a number"),
        ({"disk": "/"}, r"settings\.disk: unknown key"),
    ],
)
def test_it_names_the_bad_key_in_a_config_error(settings, message):
    with pytest.raises(ProbeConfigError, match=message):
        SystemProbe(settings, timeout=1)
    outcome = probe_once(ServiceFactory.build(kind="system", settings=settings))
    assert outcome.status == "misconfigured"  # a config error is no outage
    assert outcome.detail.startswith("config error: settings.")
