"""One tunnel's bad value or crash never stops the watchdog from checking the others.

A row written before the config bounds (or by hand) can hold a value no check can use: a
`startup_timeout` of inf makes the claim itself raise (no timedelta holds it). The next tunnel in the
same pass must still be checked, and the broken one recorded on its row with the error.
"""

from __future__ import annotations

import pytest

from tunnels import watchdog
from tunnels.models import Tunnel

pytestmark = pytest.mark.django_db


def test_it_checks_the_next_tunnel_when_one_crashes(make_tunnel):
    bad = make_tunnel(name="a-bad")
    good = make_tunnel(name="b-good")
    Tunnel.objects.filter(pk=bad.tunnel.pk).update(startup_timeout=float("inf"))

    results = watchdog.run_due()  # no exception escapes the pass

    by_name = {r.tunnel: r for r in results}
    assert by_name["b-good"].restarted and good.processes(), "the second tunnel was never checked"
    assert by_name["a-bad"].status == Tunnel.Status.UNKNOWN
    assert "OverflowError" in by_name["a-bad"].detail
    row = bad.reload()
    assert "internal error: OverflowError" in row.last_detail and row.last_checked_at is not None
    assert row.running_since is None  # no claim left behind
    assert bad.processes() == []  # nothing was started for it
