"""Property: whatever value any key of any kind is given, the import refuses it by name or a round runs.

For every key of every probe kind, every action kind (with the common service and recovery keys) and
every tunnel key, Hypothesis writes a real TOML file with that one key set to an awkward value (NaN,
infinity, 2**63, -1, a NUL, a newline, a wrong type, a list, a table) and imports it with
`importconfig`. Either the import is refused with a ConfigError naming the table and key, or the
service then runs a real round with auto-recovery (health.runner.run_round) and the tunnel a real
watchdog pass, without an exception. Every network value points at a closed port on 127.0.0.1, every
command is `true`, `false` or a missing file, and every path is under the test's own directory, so a
round is fast and touches nothing outside it.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.spec import Key
from dispatch import rounds
from health.models import Service
from health.probes import registry as probes
from health.spec import SERVICE_KEYS
from recovery.actions import registry as actions
from recovery.spec import RECOVERY_KEYS
from tests.servers import free_port
from tunnels import watchdog
from tunnels.models import Tunnel
from tunnels.spec import TUNNEL_KEYS

pytestmark = pytest.mark.django_db

PROPERTY = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CLOSED = free_port()  # nothing listens here
URL = f"http://127.0.0.1:{CLOSED}/health"
SAFE_ARGV = [["true"], ["false"], ["/nonexistent/opsportal-test"]]
NO_PROCESS = "opsportal-no-such-process-x7"

# A valid table for each kind, fast to run; the property changes one key of it.
PROBE_BASE: dict[str, dict[str, Any]] = {
    "http": {"url": URL},
    "tcp": {"host": "127.0.0.1", "port": CLOSED},
    "postgres": {"dsn_env": "OPSPORTAL_TEST_UNSET_DSN"},
    "process": {"process_name": NO_PROCESS},
    "command": {"argv": ["true"]},
    "system": {},
    "database": {},
    "dns": {"query": "web.test", "server": "127.0.0.1", "port": CLOSED},
    "tls": {"host": "127.0.0.1", "port": CLOSED},
    "redis": {"host": "127.0.0.1", "port": CLOSED},
    "mysql": {"dsn_env": "OPSPORTAL_TEST_UNSET_DSN"},
    "smtp": {"host": "127.0.0.1", "port": CLOSED},
    "push": {"period": 60},
    "ping": {"host": "127.0.0.1", "count": 1, "interval_ms": 0},
    "docker": {"container": "web", "socket": "/tmp/opsportal-test-no-docker/docker.sock"},
}
ACTION_BASE: dict[str, dict[str, Any]] = {
    "command": {"argv": ["true"]},
    "http": {"url": URL},
    "restart_process": {"argv": ["true"], "settle_seconds": 0, "stop_grace": 0},
    "reconnect_database": {},
    "restart_tunnel": {"tunnel": "edge"},
    "restart_container": {"container": "web", "socket": "/tmp/opsportal-test-no-docker/docker.sock", "stop_timeout": 0},
}
SERVICE_BASE = {"timeout": 0.5, "failure_threshold": 1, "critical": True}
ACTION_COMMON = {"timeout": 2, "verify_delay": 0, "cooldown": 0}
TUNNEL_BASE = {
    "name": "edge",
    "command": ["/nonexistent/opsportal-connector"],
    "startup_timeout": 1,
    "settle_seconds": 0,
}

# Numbers at the edges (and small ones a round can afford: a value between is a wait the test cannot).
numbers = st.one_of(
    st.sampled_from([0, 1, -1, 0.05, 2**31, 2**63 - 1, -(2**63), 1e9, 1e308, math.nan, math.inf, -math.inf]),
    st.integers(-2, 2),
    st.integers(min_value=10**5, max_value=2**63 - 1),
    st.floats(min_value=-1, max_value=1),
    st.floats(min_value=1e5, allow_nan=False),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not math.isfinite(f)),
)
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "\x00", "a\x00b", "web\n", "\n", "${OPSPORTAL_TEST_UNSET}", "x" * 2000, "☃"]),
)
scalars = st.one_of(numbers, texts, st.booleans())
anything = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(texts, scalars, max_size=3),
    st.lists(st.lists(st.integers(), max_size=2), max_size=2),
)
# Keys whose value reaches the network, a command line or the file system get only values that stay
# on 127.0.0.1, run nothing but true/false and write nothing outside the test's directory.
SAFE_TEXT: dict[str, Any] = {
    "url": st.sampled_from([URL, f"http://127.0.0.1:{CLOSED}/", "not a url", "ftp://127.0.0.1/", "http://"]),
    "ready_url": st.sampled_from([URL, "", "nope"]),
    "public_url": st.sampled_from([URL, "", "nope"]),
    "host": st.sampled_from(["127.0.0.1", "localhost", "", "a\x00", "127.0.0.1\n"]),
    "argv": st.sampled_from([*SAFE_ARGV, [], [""], ["true", "\x00"]]),
    "command": st.sampled_from([*SAFE_ARGV, [], [""], ["true\x00"]]),
    # A resolver's address: loopback only (a valid non-loopback IP would send a query off the machine).
    "server": st.sampled_from(["127.0.0.1", "::1", "", "dns.example", "127.0.0.1\n", "a\x00"]),
}
PATH_KEYS = ("log_file", "pid_file", "disk_path", "cwd", "exe", "ca_file")


def value_for(key: str, tmp: Path) -> st.SearchStrategy[Any]:
    wrong_type = st.one_of(numbers, st.booleans(), st.lists(st.integers(), max_size=2))
    if key in SAFE_TEXT:
        return st.one_of(SAFE_TEXT[key], wrong_type)
    if key in PATH_KEYS:
        paths = st.sampled_from([str(tmp / "f.log"), str(tmp), "", "relative\x00", str(tmp / "none" / "x")])
        return st.one_of(paths, wrong_type)
    return anything


def spec_of(table: str, kind: str) -> dict[str, Key]:
    if table == "service":
        return {**SERVICE_KEYS, **probes.get(kind).keys}
    if table == "recovery":
        return {**RECOVERY_KEYS, **actions.get(kind).all_keys()}
    return TUNNEL_KEYS


def cases() -> list[tuple[str, str, str]]:
    """(table, kind, key) for every key of every kind, the common keys included."""
    out = [("service", kind, k) for kind in probes.kinds() for k in spec_of("service", kind)]
    out += [("recovery", kind, k) for kind in actions.kinds() for k in spec_of("recovery", kind)]
    out += [("tunnel", "", k) for k in TUNNEL_KEYS]
    return [(t, kind, k) for t, kind, k in out if k not in ("name", "kind", "depends_on")]


# Tried for every key of the type whatever Hypothesis draws: the values of the issue.
EDGES = {
    "int": [2**63 - 1, -1, math.nan, math.inf],
    "number": [math.nan, math.inf, -math.inf, 1e9, 2**63 - 1, 1e308],
    "str": ["a\x00b"],
    "text": ["a\x00b"],
    "slug": ["edge\n", "edge\x00"],
    "dict[str]": [{"A": "\x00"}],
    "list[str]": [["\x00"]],
}


names = itertools.count()


def document(table: str, kind: str, key: str, value: Any) -> tuple[dict[str, Any], str]:
    """The file: one service (with one action for a recovery case) and the tunnel; returns it and the
    service's name (a new one each time: no cooldown or counter carries over from another example)."""
    name = f"s{next(names)}"
    tunnel = dict(TUNNEL_BASE)
    if table == "tunnel":
        tunnel[key] = value
    service: dict[str, Any] = {"name": name, **SERVICE_BASE}
    if table == "service":
        service |= {"kind": kind, **PROBE_BASE[kind], key: value}
    else:
        probe = "process" if kind == "restart_process" else "tcp"
        service |= {"kind": probe, **PROBE_BASE[probe]}
    if table == "recovery":
        service["recovery"] = [{"kind": kind, **ACTION_COMMON, **ACTION_BASE[kind], key: value}]
    return {"service": [service], "tunnel": [tunnel]}, name


CASES = cases()


def test_it_covers_every_key_of_every_kind():
    assert {k for t, kind, k in CASES if t == "tunnel"} == set(TUNNEL_KEYS) - {"name"}
    assert {kind for t, kind, _ in CASES if t == "service"} == set(probes.kinds())
    assert {kind for t, kind, _ in CASES if t == "recovery"} == set(actions.kinds())
    assert len(CASES) > 80


@pytest.mark.parametrize(("table", "kind", "key"), CASES, ids=[f"{t}-{kind}-{k}" for t, kind, k in CASES])
def test_it_refuses_by_name_or_runs_a_round(table, kind, key, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prop")

    @PROPERTY
    @given(value=value_for(key, tmp))
    def check(value: Any) -> None:
        run_one(value)

    for edge in EDGES.get(spec_of(table, kind)[key].type, []):
        if key not in SAFE_TEXT or not isinstance(edge, str):
            check = example(value=edge)(check)

    def run_one(value: Any) -> None:
        doc, name = document(table, kind, key, value)
        path = tmp / "config.toml"
        path.write_text(tomli_w.dumps(doc), encoding="utf-8")
        try:
            call_command("importconfig", str(path), "--prune")
        except CommandError as exc:
            message = str(exc)
            where = "tunnel[0]" if table == "tunnel" else "service[0]"
            assert message.startswith(f"{path}: {where}"), message  # named: the table and its index
            assert "Traceback" not in message and len(message) < 600
            return
        service = Service.objects.get(name=name)
        result = rounds.run([service])  # probes, records and recovers: no exception
        assert result.status in ("healthy", "degraded", "down")
        tunnel = Tunnel.objects.get(name="edge")
        Tunnel.objects.filter(pk=tunnel.pk).update(next_due_at=None)
        for checked in watchdog.run_due(names=["edge"]):
            assert checked.tunnel == "edge" and checked.status
        assert not Tunnel.objects.filter(pk=tunnel.pk, running_since__isnull=False).exists()

    check()


@pytest.mark.slow("imports generated configs and renders the overview for each")
@settings(PROPERTY, max_examples=60)
@given(
    name=st.one_of(
        st.text(alphabet="abz09_-\n\r\t \x00.Ä/", min_size=0, max_size=12),
        st.sampled_from(["web\n", "web\r\n", "\nweb", "web\x00", "a" * 100, "a" * 101, "-web", "_web", "0"]),
    ),
    table=st.sampled_from(["service", "tunnel", "channel", "maintenance"]),
)
def test_it_refuses_a_name_by_key_or_the_overview_renders_after_the_import(name, table, admin_client, tmp_path_factory):
    tables = {
        "service": {"kind": "database"},
        "tunnel": {"command": ["/nonexistent/opsportal-connector"]},
        "channel": {"url": "json://127.0.0.1:9/"},
        "maintenance": {"cron": "0 3 * * *"},
    }
    path = tmp_path_factory.mktemp("name") / "config.toml"
    path.write_text(tomli_w.dumps({table: [{"name": name, **tables[table]}]}), encoding="utf-8")
    try:
        call_command("importconfig", str(path), "--prune")
    except CommandError as exc:
        assert str(exc).startswith(f"{path}: {table}[0].name: "), str(exc)
        return
    page = admin_client.get("/")
    assert page.status_code == 200
    if table in ("service", "tunnel"):
        assert name in page.content.decode()
