"""One tunnel's bad value or crash never stops the watchdog from checking the others.

A row written before the config bounds (or by hand) can hold a value no check can use: a name that is
no slug (`a/b`) makes the check's host claim raise (no such lock directory). The next tunnel in the
same pass must still be checked, and the broken one recorded on its row with the error. A wait stored
out of its key's bounds (settle_seconds, startup_timeout: 1e9 would hold the check and its claim for
ever; no except clause ends a hang) is cut to the key's maximum.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest

from tunnels import claims, watchdog
from tunnels.models import Tunnel
from tunnels.spec import TUNNEL_KEYS

pytestmark = pytest.mark.django_db


@pytest.mark.slow("starts fake connectors")
def test_it_checks_the_next_tunnel_when_one_crashes(make_tunnel):
    bad = make_tunnel(name="a-bad")
    good = make_tunnel(name="b-good")
    Tunnel.objects.filter(pk=bad.tunnel.pk).update(name="a-bad/x")  # no slug: its lock file cannot be made

    results = watchdog.run_due()  # no exception escapes the pass

    by_name = {r.tunnel: r for r in results}
    assert by_name["b-good"].restarted and good.processes(), "the second tunnel was never checked"
    assert by_name["a-bad/x"].status == Tunnel.Status.UNKNOWN
    assert "FileNotFoundError" in by_name["a-bad/x"].detail
    row = bad.reload()
    assert "internal error: FileNotFoundError" in row.last_detail and row.last_checked_at is not None
    assert row.running_since is None  # no claim left behind
    assert bad.processes() == []  # nothing was started for it


def test_it_cuts_a_stored_settle_seconds_past_its_bound_to_the_maximum(make_tunnel):
    # The connector exits at once, so the check ends either way; the detail says which settle it used.
    gone = make_tunnel(name="gone", ready=False, command=[sys.executable, "-c", "pass"], process_match="")
    Tunnel.objects.filter(pk=gone.tunnel.pk).update(settle_seconds=1e9)  # past the validators

    (result,) = watchdog.run_due()

    most = TUNNEL_KEYS["settle_seconds"].maximum
    assert result.status == Tunnel.Status.DOWN
    assert f"connector exited within {most:g} s of starting" in result.detail


def test_it_bounds_the_claim_of_a_tunnel_whose_stored_waits_are_past_their_bounds(make_tunnel):
    fake = make_tunnel(name="slow")
    Tunnel.objects.filter(pk=fake.tunnel.pk).update(startup_timeout=1e9, settle_seconds=float("inf"))
    row = fake.reload()
    most = TUNNEL_KEYS["startup_timeout"].maximum + TUNNEL_KEYS["settle_seconds"].maximum
    waits = claims.STOP_GRACE_SECONDS * 2 + claims.READY_TIMEOUT + claims.PUBLIC_TIMEOUT
    assert claims.claim_ttl(row) == timedelta(seconds=most + waits + 60)
    assert (claims.bounded(row, "startup_timeout"), claims.bounded(row, "settle_seconds")) == (600, 300)
