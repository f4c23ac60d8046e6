"""Bad input, generated: the JSON API never answers 5xx nor shows a traceback; a broken TOML file changes nothing.

Hypothesis drives the real URLconf, middleware and views through Django's test client (1,300 + 700 = 2,000 requests in
all: every method, unicode paths and query strings, malformed and huge bodies, wrong types, bad tokens),
and `importconfig` with mutated config files. Derandomized so CI runs the same cases every time.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from health.models import Service
from recovery.models import RecoveryAttempt
from tests.api.api_support import make_service, staff_token

pytestmark = [pytest.mark.faults, pytest.mark.django_db]

FUZZ = settings(
    max_examples=1300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENDPOINTS = [
    "/health/live",
    "/health/ready",
    "/health/status",
    "/health/recovery-stats",
    "/health/incidents",
    "/health/recover",
    "/health/openapi.json",
    "/metrics",
    "/health/metrics",
]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "BREW"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
# Bodies shaped like the recover body, with every key given the wrong type now and then.
recover_like = st.fixed_dictionaries(
    {},
    optional={
        "services": st.one_of(st.lists(st.text(max_size=20), max_size=4), json_values),
        "force": st.one_of(st.booleans(), json_values),
        "extra": json_values,
    },
)
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    recover_like.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"{",
            b'{"services": ["web"',
            b"\xff\xfe\x00{",
            b'{"services": "web"}',
            b'{"force": "yes"}',
            b"[" * 50_000 + b"]" * 50_000,  # deep nesting
            b"x" * (2 * 1024 * 1024),  # larger than the API reads
            json.dumps({"services": ["a" * 100_000]}).encode(),
        ]
    ),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "", "☃/☃"]
)
queries = st.dictionaries(
    st.sampled_from(["limit", "offset", "status", "service", "format", "ä"]) | st.text(max_size=8),
    st.text(max_size=20) | st.integers(-(10**20), 10**20).map(str),
    max_size=3,
)
paths = st.one_of(
    st.sampled_from(ENDPOINTS),
    st.text(alphabet=string.ascii_letters + "é☃/-._%", max_size=20).map(lambda p: "/health/" + quote(p, safe="/")),
)


@pytest.fixture
def api() -> dict[str, str]:
    """Services (none with a recovery action, so no request starts a real repair) and a staff token."""
    for name in ("web", "db", "queue"):
        make_service(name)
    _, token = staff_token()
    return {"token": token}


def check(response, path: str, method: str) -> None:
    body = response.content
    assert response.status_code < 500, (method, path, response.status_code, body[:300])
    assert b"Traceback" not in body and b'File "' not in body, (method, path, body[:300])
    if path.startswith("/health/") and method != "HEAD":
        assert response["Content-Type"].startswith(("application/json", "application/health+json")), (method, path)
        json.loads(body)


@FUZZ
@given(
    method=st.sampled_from(METHODS),
    path=paths,
    query=queries,
    body=bodies,
    content_type=content_types,
    auth=st.sampled_from(["none", "valid", "garbage", "basic", "empty"]),
    accept=st.sampled_from(["", "application/health+json", "text/html", "*/*", "application/health+json;q=0.1, ☃"]),
)
def test_it_never_answers_5xx_or_a_traceback_to_any_request(
    api, method, path, query, body, content_type, auth, accept
) -> None:
    headers = {"HTTP_ACCEPT": accept}
    if auth != "none":
        headers["HTTP_AUTHORIZATION"] = {
            "valid": f"Bearer {api['token']}",
            "garbage": "Bearer ☃" + "x" * 300,
            "basic": "Basic dXNlcjpwYXNz",
            "empty": "",
        }[auth]
    client = Client(raise_request_exception=False)
    url = path + ("?" + urlencode(query) if query else "")
    response = client.generic(method, url, data=body, content_type=content_type, **headers)
    check(response, path, method)


@settings(FUZZ, max_examples=700)
@given(body=bodies, content_type=content_types, length=st.sampled_from([None, "-1", "abc", "99999999999", "0"]))
def test_it_answers_a_recover_body_of_any_shape_with_a_json_4xx_or_a_result(api, body, content_type, length) -> None:
    client = Client(raise_request_exception=False)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api['token']}"}
    if length is not None:
        headers["CONTENT_LENGTH"] = length
    response = client.generic("POST", "/health/recover", data=body, content_type=content_type, **headers)
    check(response, "/health/recover", "POST")
    if len(body) > 64 * 1024 and length is None:  # a declared length of 0 means no body is read at all
        assert response.status_code == 413
    # None of these services has an action: nothing may have run, whatever the body said.
    assert not RecoveryAttempt.objects.exclude(outcome__startswith="skipped").exists()


# --- malformed TOML ------------------------------------------------------------------------

BASE = """\
[[service]]
name = "web"
kind = "http"
url = "http://127.0.0.1:9/health"
interval = 30

[[service]]
name = "db"
kind = "tcp"
host = "127.0.0.1"
port = 5432

  [[service.recovery]]
  kind = "command"
  argv = ["true"]
"""
# Each replacement makes BASE invalid for one reason a person could make.
BREAKAGES = [
    ("interval = 30", "interval = 'thirty'"),
    ("interval = 30", "interval = -5"),
    ("interval = 30", "interval = 0"),
    ("interval = 30", "interval = [30]"),
    ('kind = "http"', 'kind = "gopher"'),
    ('name = "web"', 'name = "Web Site!"'),
    ('name = "db"', 'name = "web"'),
    ('url = "http://127.0.0.1:9/health"', "url = 5"),
    ('url = "http://127.0.0.1:9/health"\n', ""),
    ("port = 5432", "port = 'x'"),
    ("port = 5432", "port = 99999"),
    ('argv = ["true"]', 'argv = "true"'),
    ('kind = "command"', 'kind = "teleport"'),
    ("interval = 30", "interval = 30\nbogus_key = 1"),
    ("[[service]]", "[service]"),
    ('name = "web"', 'name = "web'),
    # One value no round can use (issue 15 items 8 and 9): each is refused by name.
    ("interval = 30", "interval = 30\ntimeout = nan"),
    ("interval = 30", "interval = 30\ntimeout = inf"),
    ('argv = ["true"]', 'argv = ["true"]\ncooldown = 9223372036854775807'),
    ('argv = ["true"]', 'argv = ["true"]\nverify_delay = inf'),
    ('argv = ["true"]', 'argv = ["true"]\nverify_delay = 1e9'),
    ("interval = 30", 'interval = 30\ndescription = "a\\u0000b"'),
    ('name = "web"', 'name = "web\\n"'),
    ("interval = 30", "interval = 30\nheaders = {a = " + "[" * 3000 + "]" * 3000 + "}"),
    ("[[service]]", "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n[[service]]"),
]
broken_configs = st.one_of(
    st.sampled_from(BREAKAGES).map(lambda b: BASE.replace(*b, 1)),
    # Garbage spliced into a valid file at a random place.
    st.tuples(st.integers(0, len(BASE)), st.text(alphabet="[]{}=\"'\\\n=#.,", min_size=1, max_size=6)).map(
        lambda t: BASE[: t[0]] + t[1] + BASE[t[0] :]
    ),
    st.text(max_size=200),
)


def snapshot() -> str:
    from io import StringIO

    out = StringIO()
    call_command("exportconfig", stdout=out)
    return out.getvalue()


@settings(FUZZ, max_examples=250)
@given(text=broken_configs)
def test_it_refuses_a_malformed_config_clearly_and_changes_nothing(text, tmp_path_factory) -> None:
    path: Path = tmp_path_factory.mktemp("cfg") / "broken.toml"
    good = path.with_name("good.toml")
    good.write_text(BASE.replace('"web"', '"site"').replace('"db"', '"store"'), encoding="utf-8")
    if not Service.objects.exists():
        call_command("importconfig", str(good))
    before = snapshot()
    path.write_text(text, encoding="utf-8")
    try:
        call_command("importconfig", str(path))
    except CommandError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and message.endswith("(nothing was changed)"), message
        assert "Traceback" not in message
        assert len(message) < 600
    else:
        # Random splicing can make a valid file; a valid import is allowed to change things: undo it.
        Service.objects.exclude(name__in=["site", "store"]).delete()
        call_command("importconfig", str(good))
        return
    assert snapshot() == before


@pytest.mark.parametrize("breakage", BREAKAGES[-9:], ids=[b[1][:40] for b in BREAKAGES[-9:]])
def test_it_refuses_each_value_no_round_can_use_by_name(breakage, tmp_path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(BASE, encoding="utf-8")
    call_command("importconfig", str(good))
    before = snapshot()
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace(*breakage, 1), encoding="utf-8")
    with pytest.raises(CommandError) as info:
        call_command("importconfig", str(path))
    message = str(info.value)
    # Named: the table, its index and the key (or the nesting), never a traceback nor a database error.
    assert message.startswith(f"{path}: ") and message.endswith("(nothing was changed)"), message
    assert any(w in message for w in ("service[0].", "service[1].", "nested more than")), message
    assert "Traceback" not in message and "Error" not in message and len(message) < 600
    assert snapshot() == before
