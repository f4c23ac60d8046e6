"""What a tunnel restart stops, and how long it waits (issue 15 item 7; issue 14 item 3 for tunnels).

Real connectors (the fake cloudflared), real decoys whose argv matches `process_match`, and a real second
process that started a connector the way another portal process's watchdog would.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from configfile.config import parse
from core.procs import ProcRef
from core.spec import ConfigError
from tests.core.other_portal import OtherPortal, other_portal_fixture, status
from tests.servers import wait_for
from tests.tunnels.conftest import FAKE, assert_clean
from tunnels import watchdog
from tunnels.models import Tunnel, TunnelEvent

Kind = TunnelEvent.Kind
SLEEP = "import time; time.sleep(10**6)"


@pytest.fixture
def other_portal(tmp_path: Path) -> Iterator[OtherPortal]:
    yield from other_portal_fixture(tmp_path)


@pytest.fixture
def decoys() -> Iterator[list[subprocess.Popen[bytes]]]:
    made: list[subprocess.Popen[bytes]] = []
    yield made
    for p in made:
        p.kill()
        p.wait(10)


def decoy(port: int, made: list[subprocess.Popen[bytes]]) -> psutil.Process:
    """A process whose argv matches the tunnel's process_match (`fake_cloudflared.py --port N`), not a connector."""
    child = subprocess.Popen(
        [sys.executable, "-c", SLEEP, FAKE.name, "--port", str(port)], stdin=subprocess.DEVNULL, start_new_session=True
    )
    made.append(child)
    proc = psutil.Process(child.pid)

    def matches() -> bool:
        # Until the child has exec'd, its argv is still the test's own: a watchdog looking then would not see it.
        with contextlib.suppress(psutil.Error):
            return FAKE.name in proc.cmdline()
        return False

    assert wait_for(matches, timeout=10), "the decoy never showed its argv"
    return proc


def alive(proc: psutil.Process) -> bool:
    return status(proc.pid) not in ("gone", psutil.STATUS_ZOMBIE)


pytestmark = pytest.mark.django_db


@pytest.mark.slow("fake connectors started by another process")
def test_a_restart_of_a_connector_another_portal_process_started_never_waits_on_a_zombie(make_tunnel, other_portal):
    fake = make_tunnel()
    # Another process's watchdog started it and recorded it on the row (pid + create time).
    ref = other_portal.start_detached(fake.tunnel.command)
    Tunnel.objects.filter(pk=fake.tunnel.pk).update(pid=ref.pid, pid_create_time=ref.create_time)

    started = time.monotonic()
    restarted, detail = watchdog.restart("edge", "requested by test")
    elapsed = time.monotonic() - started

    assert restarted, detail
    assert not ref.alive()
    tunnel = fake.reload()
    assert tunnel.pid != ref.pid and ProcRef(tunnel.pid, tunnel.pid_create_time).alive()
    # Stop (at once: the other process reaps it) + settle 0.3 s + ready; waiting on its zombie took 5 + 5 s more.
    assert elapsed < 4.0, f"restart took {elapsed:.1f} s"
    assert wait_for(lambda: status(ref.pid) == "gone", timeout=1.0), status(ref.pid)
    assert_clean(fake)


@pytest.mark.slow("starts and stops fake connectors")
def test_a_restart_stops_the_connector_it_knows_and_leaves_other_matches_alone(make_tunnel, decoys):
    fake = make_tunnel()
    first = fake.start()
    bystander = decoy(fake.port, decoys)  # matches process_match too (an operator's copy, a wrapper)

    restarted, detail = watchdog.restart("edge", "requested by test")

    assert restarted, detail
    assert not psutil.pid_exists(first) or status(first) in ("gone", psutil.STATUS_ZOMBIE)
    assert alive(bystander)
    tunnel = fake.reload()
    assert tunnel.pid not in (first, bystander.pid)
    for p in decoys:  # the bystander is this test's to stop (assert_clean stops every match)
        p.kill()
    assert_clean(fake)


def test_a_restart_without_a_known_connector_refuses_more_matches_than_one_and_records_them(make_tunnel, decoys):
    fake = make_tunnel()
    one, two = decoy(fake.port, decoys), decoy(fake.port, decoys)

    restarted, detail = watchdog.restart("edge", "requested by test")

    assert not restarted
    assert alive(one) and alive(two)
    event = fake.reload().events.filter(kind=Kind.RESTART_FAILED).get()
    assert event.detail.startswith("refused: 2 processes match process_match"), event.detail
    assert f"pid {one.pid}" in event.detail and f"pid {two.pid}" in event.detail
    assert "nothing stopped or started" in event.detail
    assert detail == fake.reload().last_detail
    # Nothing was started: the only matches are the two decoys.
    assert sorted(p.pid for p in fake.processes()) == sorted([one.pid, two.pid])
    for p in decoys:
        p.kill()
    assert_clean(fake)


def test_a_restart_without_a_known_connector_stops_the_one_match(make_tunnel, decoys):
    fake = make_tunnel()
    stray = decoy(fake.port, decoys)  # e.g. a connector started by hand, its pid never recorded

    restarted, detail = watchdog.restart("edge", "requested by test")

    assert restarted, detail
    assert not alive(stray)
    assert fake.reload().pid != stray.pid
    assert_clean(fake)


@pytest.mark.parametrize(("value", "problem"), [("'unclosed", "No closing quotation"), ("   ", "it is empty")])
def test_it_refuses_a_process_match_that_cannot_be_split_at_import(value, problem):
    text = f'[[tunnel]]\nname = "edge"\ncommand = ["cloudflared"]\nprocess_match = "{value}"\n'
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.where == "tunnel[0].process_match"
    assert problem in caught.value.message


def test_a_bad_process_match_stored_by_other_means_is_a_config_error_not_a_crash(make_tunnel):
    fake = make_tunnel(process_match="'unclosed")
    result = watchdog.check_now(fake.tunnel)
    assert result is not None
    assert result.detail.startswith("config error: process_match: cannot be split into argv elements"), result.detail
    assert fake.reload().status == Tunnel.Status.DOWN
    assert fake.processes() == []  # nothing started with a match that could never find it
