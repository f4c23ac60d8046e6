"""Key specs: validation that names the bad key, ${VAR} expansion, secret scrubbing."""

from __future__ import annotations

import base64
import json
import math
from urllib.parse import quote, quote_plus

import pytest
from django.core.exceptions import ValidationError
from requests.utils import requote_uri

from core.spec import (
    MAX_DEPTH,
    SLUG,
    ConfigError,
    Key,
    check_depth,
    env_value,
    expand_env,
    expand_header,
    field_validators,
    scrub,
    secret_parts,
    validate,
    with_defaults,
)
from health.probes import registry as probes
from health.spec import MAINTENANCE_KEYS, SERVICE_KEYS
from notify.spec import CHANNEL_KEYS
from recovery.actions import registry as actions
from recovery.spec import RECOVERY_KEYS
from tunnels.spec import TUNNEL_KEYS

SPEC = {
    "name": Key("slug", required=True),
    "interval": Key("int", default=60, minimum=1, maximum=86400),
    "ratio": Key("number", minimum=0.5),
    "verify": Key("bool", default=True),
    "method": Key("str", default="GET", choices=("GET", "POST")),
    "argv": Key("argv"),
    "codes": Key("list[int]", minimum=100, maximum=599),
    "headers": Key("dict[str]", default={}),
    "equals": Key("scalar"),
    "note": Key("text"),
    "tags": Key("list[str]"),
}


def test_it_returns_the_given_keys_and_fills_defaults_separately():
    cleaned = validate(SPEC, {"name": "web", "interval": 30, "note": ""}, "service[0]")
    assert cleaned == {"name": "web", "interval": 30, "note": ""}
    filled = with_defaults(SPEC, cleaned)
    assert (filled["interval"], filled["verify"], filled["method"], filled["argv"]) == (30, True, "GET", None)


def test_it_treats_none_as_missing():
    assert validate(SPEC, {"name": "web", "ratio": None}, "") == {"name": "web"}
    with pytest.raises(ConfigError, match=r"^name: is required$"):
        validate(SPEC, {"name": None}, "")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "service[3].name: is required"),
        ({"name": "Web"}, "service[3].name: must be a slug"),
        ({"name": "web", "colour": 1}, "service[3].colour: unknown key"),
        ({"name": "web", "interval": 0}, "service[3].interval: must be a positive integer"),
        ({"name": "web", "interval": "60"}, "service[3].interval: must be a positive integer"),
        ({"name": "web", "interval": True}, "service[3].interval: must be a positive integer"),
        ({"name": "web", "interval": 1.5}, "service[3].interval: must be a positive integer"),
        ({"name": "web", "interval": 86401}, "service[3].interval: must be at most 86400"),
        ({"name": "web", "ratio": 0.1}, "service[3].ratio: must be at least 0.5"),
        ({"name": "web", "ratio": False}, "service[3].ratio: must be a number"),
        ({"name": "web", "verify": "true"}, "service[3].verify: must be true or false"),
        ({"name": "web", "method": "DELETE"}, "service[3].method: must be one of GET, POST"),
        ({"name": "web", "method": ""}, "service[3].method: must be a non-empty string"),
        ({"name": "web", "argv": "rm -rf /"}, "service[3].argv: must be a non-empty list of strings (an argv"),
        ({"name": "web", "argv": ["ok", ""]}, "service[3].argv: must be a non-empty list of strings"),
        ({"name": "web", "codes": [200, 700]}, "service[3].codes: must be at most 599"),
        ({"name": "web", "codes": [200, True]}, "service[3].codes: must be a non-empty list of integers"),
        ({"name": "web", "headers": {"A": 1}}, "service[3].headers: must be a table of strings"),
        ({"name": "web", "equals": [1]}, "service[3].equals: must be a string, number or boolean"),
        ({"name": "web", "note": 5}, "service[3].note: must be a string"),
        ({"name": "web", "tags": ["a", 2]}, "service[3].tags: must be a list of non-empty strings"),
    ],
)
def test_it_names_the_table_and_key_of_a_bad_value(data, message):
    with pytest.raises(ConfigError) as info:
        validate(SPEC, data, "service[3]")
    assert str(info.value).startswith(message)
    assert info.value.where == message.split(":")[0]


def test_it_refuses_a_table_that_is_not_a_table():
    with pytest.raises(ConfigError, match=r"^tunnel\[0\]: must be a table$"):
        validate(SPEC, ["name"], "tunnel[0]")


def test_it_allows_ignored_keys():
    assert validate(SPEC, {"name": "web", "recovery": []}, "s", ignore=("recovery",)) == {"name": "web"}


def test_it_expands_variables_and_collects_their_values(monkeypatch):
    monkeypatch.setenv("OPS_SPEC_A", "alpha-secret")
    monkeypatch.setenv("OPS_SPEC_B", "beta")
    found: list[str] = []
    assert expand_env("Bearer ${OPS_SPEC_A}/${OPS_SPEC_B}", found) == "Bearer alpha-secret/beta"
    assert found == ["alpha-secret", "beta"]
    assert expand_env("no refs, $HOME or {x}") == "no refs, $HOME or {x}"


def test_it_names_an_unset_variable(monkeypatch):
    monkeypatch.delenv("OPS_SPEC_MISSING", raising=False)
    with pytest.raises(ConfigError, match="^environment variable OPS_SPEC_MISSING is not set$"):
        expand_env("x ${OPS_SPEC_MISSING}")


def test_it_reads_a_named_variable_as_a_secret(monkeypatch):
    monkeypatch.setenv("OPS_SPEC_DSN", "postgres://u:p@h/d")
    monkeypatch.setenv("OPS_SPEC_EMPTY", "")
    found: list[str] = []
    assert env_value("OPS_SPEC_DSN", found) == "postgres://u:p@h/d"
    # The DSN first, then its parts (its userinfo; a one-letter password is too short to scrub anyway).
    assert found[:2] == ["postgres://u:p@h/d", "u:p"]
    with pytest.raises(ConfigError, match="OPS_SPEC_EMPTY is not set"):
        env_value("OPS_SPEC_EMPTY")


def test_it_scrubs_secrets_longest_first():
    text = "token abcdef and abc and abcdef again"
    assert scrub(text, ["abc", "abcdef", "abcdef"]) == "token *** and *** and *** again"


def test_it_scrubs_the_url_encoded_form_of_a_secret():
    secret = "p@ss word/+1"
    text = "GET /v1?key=p%40ss%20word%2F%2B1 and form key=p%40ss+word%2F%2B1 failed"
    scrubbed = scrub(text, [secret])
    assert scrubbed == "GET /v1?key=*** and form key=*** failed"


def test_it_leaves_text_alone_without_secrets_and_ignores_trivially_short_ones():
    assert scrub("HTTP 200", []) == "HTTP 200"
    assert scrub("HTTP 200", ["", "20"]) == "HTTP 200"


# -- issue 14 item 2: every form a message can carry a secret in
LEAKY = "s3cr%t pa ss/+=\n"


def _b64_forms(secret: str, prefix: bytes) -> list[str]:
    data = prefix + secret.encode() + b"tail"
    return [
        base64.b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
    ]


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(repr(LEAKY), id="repr"),
        pytest.param(json.dumps(LEAKY), id="json"),
        pytest.param(quote(LEAKY), id="quote"),
        pytest.param(quote(LEAKY, safe="").lower(), id="quote-lowercase-hex"),
        pytest.param(quote_plus(LEAKY), id="quote_plus"),
        pytest.param(requote_uri(LEAKY), id="requests-requote"),
        pytest.param(LEAKY.strip(), id="stripped"),
        pytest.param(base64.b64encode(LEAKY.encode()).decode(), id="base64"),
        pytest.param(base64.urlsafe_b64encode(LEAKY.encode()).decode().rstrip("="), id="base64-urlsafe-unpadded"),
    ],
)
def test_it_scrubs_every_form_a_message_can_carry_a_secret_in(form):
    scrubbed = scrub(f"error: {form} end", [LEAKY])
    assert form not in scrubbed and "***" in scrubbed
    assert scrubbed.startswith("error: ") and scrubbed.endswith(" end")


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_it_scrubs_base64_of_a_secret_embedded_at_any_offset(offset):
    secret = "hunter2-very-secret"
    for encoded in _b64_forms(secret, b"x" * (offset + 3)):
        scrubbed = scrub(f"output: {encoded}", [secret])
        # What is left cannot decode back to the secret.
        assert secret not in _decoded(scrubbed.removeprefix("output: ")), (offset, encoded, scrubbed)
        assert "***" in scrubbed


def _decoded(text: str) -> str:
    for part in text.split("***"):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                value = decode(part + "=" * (-len(part) % 4)).decode("latin-1")
            except ValueError:
                continue
            if "hunter2-very-secret" in value:
                return value
    return ""


def test_it_registers_the_parts_of_a_secret(monkeypatch):
    monkeypatch.setenv("OPS_SPEC_URL", "https://deploy:p%40ss-w0rd@hooks.example/x")
    monkeypatch.setenv("OPS_SPEC_NL", "tok-with-newline\n")
    monkeypatch.setenv("OPS_SPEC_KV", "host=db password=kv-secret-1 dbname=x")
    found: list[str] = []
    expand_env("${OPS_SPEC_URL} ${OPS_SPEC_NL}", found)
    env_value("OPS_SPEC_KV", found)
    for part in ("p%40ss-w0rd", "p@ss-w0rd", "deploy:p%40ss-w0rd", "tok-with-newline", "kv-secret-1"):
        assert part in found, part
    assert scrub("auth failed for p@ss-w0rd", found) == "auth failed for ***"


def test_it_refuses_a_header_value_with_a_line_break_naming_the_key_and_variable(monkeypatch):
    monkeypatch.setenv("OPS_SPEC_KEY", "abc-secret\n")
    with pytest.raises(ConfigError) as caught:
        expand_header("X-Api-Key", "${OPS_SPEC_KEY}", [], "settings.headers")
    assert str(caught.value).startswith("settings.headers.X-Api-Key:")
    assert "OPS_SPEC_KEY" in str(caught.value) and "abc-secret" not in str(caught.value)
    with pytest.raises(ConfigError, match="X-Literal: must not contain a line break"):
        expand_header("X-Literal", "a\nb", [], "settings.headers")


# --- bounds, finiteness, NUL, nesting, slugs (issue 15 items 8 and 9) -----------------------


def _every_key() -> list[tuple[str, str, Key]]:
    """Every key of every table the config file (and the admin) accepts, named where it lives."""
    tables = {"service": SERVICE_KEYS, "recovery": RECOVERY_KEYS, "tunnel": TUNNEL_KEYS}
    tables |= {"channel": CHANNEL_KEYS, "maintenance": MAINTENANCE_KEYS}
    tables |= {f"probe {k}": probes.get(k).keys for k in probes.kinds()}
    tables |= {f"action {k}": actions.get(k).all_keys() for k in actions.kinds()}
    return [(table, name, key) for table, spec in tables.items() for name, key in spec.items()]


def test_it_bounds_every_numeric_key_of_every_table_finitely():
    numeric = [(t, n, k) for t, n, k in _every_key() if k.type in ("int", "number", "list[int]")]
    assert len(numeric) > 20
    for table, name, key in numeric:
        assert key.minimum is not None and key.maximum is not None, (table, name)
        assert math.isfinite(key.minimum) and math.isfinite(key.maximum), (table, name)
        assert key.maximum <= 2**31 - 1, (table, name)  # what every database's integer column holds


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_it_refuses_nan_and_infinity_by_name(value):
    spec = {"t": Key("number", minimum=0, maximum=10), "j": Key("scalar")}
    for name in spec:
        with pytest.raises(ConfigError, match=rf"^x\.{name}: must be a finite number$"):
            validate(spec, {name: value}, "x")


def test_it_bounds_a_key_that_names_no_bound():
    with pytest.raises(ConfigError, match="must be at most 86400"):
        validate({"n": Key("number")}, {"n": 1e9}, "x")
    with pytest.raises(ConfigError, match="must be at most 2147483647"):
        validate({"n": Key("int")}, {"n": 2**63 - 1}, "x")
    with pytest.raises(ConfigError, match="must be at least 0"):
        validate({"n": Key("int")}, {"n": -1}, "x")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (Key("str"), "a\x00b"),
        (Key("text"), "\x00"),
        (Key("slug"), "web\x00"),
        (Key("argv"), ["true", "\x00"]),
        (Key("list[str]"), ["\x00"]),
        (Key("dict[str]"), {"A": "b\x00"}),
        (Key("dict[str]"), {"A\x00": "b"}),
        (Key("scalar"), "\x00"),
    ],
)
def test_it_refuses_a_nul_character_in_any_string(key, value):
    with pytest.raises(ConfigError, match=r"^x\.k: must not contain a NUL character$"):
        validate({"k": key}, {"k": value}, "x")


@pytest.mark.parametrize("name", ["web\n", "web\r\n", "\nweb", "web ", "Web", "-web", "a" * 101, ""])
def test_it_matches_a_slug_in_full(name):
    with pytest.raises(ConfigError, match="must be a slug"):
        validate({"name": Key("slug")}, {"name": name}, "service[0]")
    assert not SLUG.fullmatch(name)


def test_it_accepts_a_slug_up_to_its_length():
    assert validate({"name": Key("slug")}, {"name": "a_b-9" + "x" * 95}, "") == {"name": "a_b-9" + "x" * 95}


def test_it_bounds_nesting_depth_without_recursing():
    deep: list = []
    for _ in range(100_000):  # deeper than any recursion limit
        deep = [deep]
    with pytest.raises(ConfigError, match=f"nested more than {MAX_DEPTH} levels deep"):
        check_depth({"a": deep})
    shallow: dict = {"service": [{"headers": {"a": "b"}}]}
    check_depth(shallow)


def test_it_gives_model_fields_the_same_check_and_message():
    validator = field_validators(Key("int", minimum=1, maximum=10))[0]
    validator(5)
    for value, message in [(11, "must be at most 10"), (0, "must be a positive integer")]:
        with pytest.raises(ValidationError) as info:
            validator(value)
        assert info.value.messages == [message]
    with pytest.raises(ValidationError, match="must be a finite number"):
        field_validators(Key("number", minimum=0, maximum=1))[0](math.nan)


def test_it_takes_every_word_of_an_unquoted_key_value_password_up_to_the_next_key():
    # libpq reads `password=abc def` as `abc` and a key `def`; its error quotes `def`, so it is a secret too.
    parts = secret_parts("host=db password=abc def ghi port=5432")
    assert {"abc", "def", "ghi"} <= set(parts) and "port=5432" not in parts
    assert "sslmode" not in secret_parts("password=abc xy sslmode = require")  # `key = value` is a key
    assert "xy" not in secret_parts("password=abc xy dbname=x")  # too short to scrub, as scrub decides
