"""Declarative key specs for configuration tables, with errors that name the bad key.

One mechanism validates a service's kind settings, a recovery action, a tunnel and
every table of the TOML file: `service[3].interval: must be a positive integer`.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible
from requests.utils import requote_uri

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A password in a key=value DSN (`password='x y'`) or a URL query (`?password=x&`).
_KV_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'?|[^\s&]+)", re.IGNORECASE)
# Shorter values are not worth scrubbing: "***" everywhere would make details unreadable.
MIN_SECRET = 3
# base64 output that encodes so few secret bytes is noise, not a leak.
MIN_BASE64 = 4
# Always used with fullmatch: `$` alone also matches before a final newline ("web\n" would pass).
# The anchors stay for the OpenAPI document, where a pattern is not anchored by itself.
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
# Every number a table accepts is bounded, so a value no round can use (a cooldown of 2**63 s, a settle
# of 1e9 s) is refused at import instead of breaking each round that meets it. A Key that names no
# bound gets these: the largest value every database's integer column holds, and a day of seconds.
INT_MAX = 2_147_483_647
NUMBER_MAX = 86_400
NUMERIC = ("int", "number", "list[int]")
# How deep tables and arrays may nest in a config file (the deepest real one, a header table, is 3).
MAX_DEPTH = 16


class ConfigError(ValueError):
    """A configuration value is wrong; `str()` reads `where.key: problem`."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Key:
    """One key of a table. `type` is one of the names in `_CHECKS`."""

    type: str
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.type in NUMERIC:
            if self.minimum is None:
                object.__setattr__(self, "minimum", 0)
            if self.maximum is None:
                object.__setattr__(self, "maximum", NUMBER_MAX if self.type == "number" else INT_MAX)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_uuid(v: str) -> bool:
    try:
        return str(uuid.UUID(v)) == v.lower()
    except ValueError:
        return False


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


_CHECKS: dict[str, tuple[Any, str]] = {
    "str": (lambda v: isinstance(v, str) and v != "", "must be a non-empty string"),
    "text": (lambda v: isinstance(v, str), "must be a string"),
    "slug": (
        lambda v: isinstance(v, str) and bool(SLUG.fullmatch(v)),
        "must be a slug (lowercase letters, digits, '-' or '_', at most 100)",
    ),
    "uuid": (lambda v: isinstance(v, str) and _is_uuid(v), "must be a UUID (8-4-4-4-12 hex digits)"),
    "int": (_is_int, "must be an integer"),
    "number": (_is_num, "must be a number"),
    "bool": (lambda v: isinstance(v, bool), "must be true or false"),
    "scalar": (_is_scalar, "must be a string, number or boolean"),
    "list[str]": (
        lambda v: isinstance(v, list) and all(isinstance(i, str) and i for i in v),
        "must be a list of non-empty strings",
    ),
    "argv": (
        lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(i, str) and i for i in v),
        "must be a non-empty list of strings (an argv, never a shell string)",
    ),
    "list[int]": (
        lambda v: isinstance(v, list) and len(v) > 0 and all(_is_int(i) for i in v),
        "must be a non-empty list of integers",
    ),
    "redirects": (
        lambda v: isinstance(v, bool) or v == "same-origin",
        'must be true, false or "same-origin"',
    ),
    "dict[str]": (
        lambda v: isinstance(v, dict) and all(isinstance(i, str) for i in v.values()),
        "must be a table of strings",
    ),
}


def has_nul(value: Any) -> bool:
    """A NUL anywhere in a string, a list's items or a table's keys and values (PostgreSQL stores none)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    return False


def _bound(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else f"{n:g}"


def _check(key: Key, value: Any, where: str) -> Any:
    if has_nul(value):
        raise ConfigError(where, "must not contain a NUL character")
    ok, message = _CHECKS[key.type]
    if not ok(value):
        if key.type == "int" and key.minimum == 1:
            message = "must be a positive integer"
        raise ConfigError(where, message)
    # NaN passes every comparison with a bound, and infinity every upper one a Key could leave out.
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(where, "must be a finite number")
    numbers = [value] if _is_num(value) else value if key.type == "list[int]" else []
    for n in numbers:
        if key.minimum is not None and n < key.minimum:
            if key.type == "int" and key.minimum == 1:
                raise ConfigError(where, "must be a positive integer")
            raise ConfigError(where, f"must be at least {_bound(key.minimum)}")
        if key.maximum is not None and n > key.maximum:
            raise ConfigError(where, f"must be at most {_bound(key.maximum)}")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(where, "must be one of " + ", ".join(map(str, key.choices)))
    return value


def key_name(name: str) -> str:
    """A key as an error shows it: escaped when a NUL or line break would cut the line it is printed on."""
    return name if name.isprintable() else repr(name)


def validate(spec: dict[str, Key], data: Any, where: str, *, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check `data` against `spec`; return the given keys (defaults are not filled in)."""
    if not isinstance(data, dict):
        raise ConfigError(where, "must be a table")
    for name in data:
        if name not in spec and name not in ignore:
            shown = key_name(name)
            raise ConfigError(f"{where}.{shown}" if where else shown, "unknown key")
    cleaned: dict[str, Any] = {}
    for name, key in spec.items():
        path = f"{where}.{name}" if where else name
        if name not in data or data[name] is None:
            if key.required:
                raise ConfigError(path, "is required")
            continue
        cleaned[name] = _check(key, data[name], path)
    return cleaned


def check_depth(value: Any, where: str = "", limit: int = MAX_DEPTH) -> None:
    """Refuse tables and arrays nested deeper than `limit` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= limit:
                raise ConfigError(where, f"nested more than {limit} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


@deconstructible
class KeyValidator:
    """A model field's validator made from a config Key: the admin refuses what the file import refuses,
    with the same message (`must be at most 86400`, `must be a finite number`)."""

    def __init__(self, type: str, minimum: float | None = None, maximum: float | None = None) -> None:
        self.type, self.minimum, self.maximum = type, minimum, maximum

    def __call__(self, value: Any) -> None:
        if value is None:
            return
        try:
            _check(Key(self.type, minimum=self.minimum, maximum=self.maximum), value, "")
        except ConfigError as exc:
            raise ValidationError(exc.message, code="bounds") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyValidator) and (self.type, self.minimum, self.maximum) == (
            other.type,
            other.minimum,
            other.maximum,
        )

    def __hash__(self) -> int:
        return hash((self.type, self.minimum, self.maximum))


def field_validators(key: Key) -> list[KeyValidator]:
    """The validators of the model field that stores `key` (its bounds, finiteness, no NUL)."""
    return [KeyValidator(key.type, key.minimum, key.maximum)]


def with_defaults(spec: dict[str, Key], data: dict[str, Any]) -> dict[str, Any]:
    filled = {name: key.default for name, key in spec.items()}
    filled.update(data)
    return filled


def secret_parts(value: str) -> list[str]:
    """A secret and the parts of it a message may quote alone: stripped, a URL's userinfo, a password."""
    parts = [value]
    stripped = value.strip()
    if stripped != value:
        parts.append(stripped)
    parts.extend(url_secrets(stripped))
    for match in _KV_PASSWORD.finditer(stripped):
        raw = match.group(1)
        if raw.startswith("'"):
            raw = re.sub(r"\\(.)", r"\1", raw.strip("'"))
        else:
            # `password=abc def` unquoted: libpq reads `def` as a key and its error quotes it.
            parts.extend(_words_before_next_key(stripped[match.end() :]))
        parts.extend((raw, unquote(raw)))
    return list(dict.fromkeys(p for p in parts if p))


def _words_before_next_key(rest: str) -> list[str]:
    """The words of a key-value DSN up to the next `key=` (or `key =`), as libpq would misread them."""
    words = []
    for word in re.finditer(r"\S+", rest):
        if "=" in word.group() or re.match(r"\s*=", rest[word.end() :]):
            break
        if len(word.group()) >= MIN_SECRET:
            words.append(word.group())
    return words


def url_secrets(url: str) -> list[str]:
    """The userinfo of a URL (`user:password`), its password raw and decoded; none without a password."""
    if "://" not in url:
        return []
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # a malformed URL (a stray bracket): fall back to the text between :// and @
        netloc = url.split("://", 1)[1].split("/", 1)[0]
    if "@" not in netloc:
        return []
    userinfo = netloc.rsplit("@", 1)[0]
    password = userinfo.partition(":")[2]
    if not password:  # a user name alone is no secret (and often a word the details need: `postgres`)
        return []
    return list(dict.fromkeys((userinfo, password, unquote(password))))


def env_refs(value: str) -> list[str]:
    """The names of the `${VAR}` references in a value."""
    return _ENV_REF.findall(value)


def _register(found: list[str] | None, secret: str) -> None:
    if found is not None and secret:
        found.extend(secret_parts(secret))


def expand_env(value: str, found: list[str] | None = None, refused: Collection[str] = ()) -> str:
    """Replace `${VAR}` with the variable's value; `found` collects the values and their parts (secrets).

    A name in `refused` is a ConfigError naming it (the portal's own secrets, for a child's env or argv).
    """

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in refused:
            raise ConfigError("", f"${{{name}}} is the portal's own {name}, never passed to a child")
        if name not in os.environ:
            raise ConfigError("", f"environment variable {name} is not set")
        secret = os.environ[name]
        _register(found, secret)
        return secret

    return _ENV_REF.sub(sub, value)


def _has_break(value: str) -> bool:
    return "\n" in value or "\r" in value


def expand_header(name: str, value: str, found: list[str] | None, where: str, *, missing_ok: bool = False) -> str:
    """expand_env for an HTTP header value, refusing a line break (a value read from a file keeps its newline).

    The secret is registered before the check, so even the refusal cannot carry it. With `missing_ok`
    (at import time, where the variables may belong to another environment) an unset variable is skipped.
    """
    path = f"{where}.{name}" if where else name
    if _has_break(value):
        raise ConfigError(path, "must not contain a line break")

    def sub(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in os.environ:
            if missing_ok:
                return ""
            raise ConfigError(path, f"environment variable {var} is not set")
        secret = os.environ[var]
        _register(found, secret)
        if _has_break(secret):
            raise ConfigError(
                path,
                f"the value of ${{{var}}} contains a line break, which a header cannot carry "
                f"(remove the trailing newline where {var} is set)",
            )
        return secret

    return _ENV_REF.sub(sub, value)


def env_value(name: str, found: list[str] | None = None) -> str:
    """The value of the variable named by a `*_env` key; it and its parts (a DSN's password) are secrets."""
    value = os.environ.get(name)
    if not value:
        raise ConfigError("", f"environment variable {name} is not set")
    _register(found, value)
    return value


def _base64_forms(secret: bytes) -> set[str]:
    """What base64 of the secret looks like, alone or inside a longer encoded text at any offset."""
    forms: set[str] = set()
    whole = base64.b64encode(secret).decode()
    forms.update((whole, whole.rstrip("=")))
    for offset, skip in ((0, 0), (1, 2), (2, 3)):
        # Characters that mix in bits of the bytes before or after the secret differ in every message:
        # drop them and keep the part that only the secret decides.
        encoded = base64.b64encode(b"\0" * offset + secret).decode().rstrip("=")[skip:]
        if (offset + len(secret)) % 3:
            encoded = encoded[:-1]
        if len(encoded) >= MIN_BASE64:
            forms.add(encoded)
    return forms | {f.translate(_URLSAFE) for f in forms}


_URLSAFE = str.maketrans("+/", "-_")
# requests' requote_uri keeps these as they are (and leaves valid %XX alone).
_REQUESTS_SAFE = "!#$%&'()*+,/:;=?@[]~"


@functools.lru_cache(maxsize=4096)
def _forms(secret: str) -> tuple[frozenset[str], frozenset[str]]:
    """(exact forms, URL-encoded forms) of one secret; URL-encoded ones match whatever the hex case."""
    exact: set[str] = set()
    encoded: set[str] = set()
    # A value read from a file often ends in a newline the message no longer has.
    for value in {secret, secret.strip()}:
        exact |= {
            value,
            repr(value)[1:-1],
            repr(value + '"')[1:-2],  # the quoting Python picks when the value holds both quote kinds
            repr(value.encode())[2:-1],
            value.encode("unicode_escape").decode("ascii"),
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
        }
        exact |= _base64_forms(value.encode())
        encoded |= {
            quote(value, safe=""),
            quote(value),
            quote_plus(value),
            quote_plus(value, safe="/"),
            quote(value, safe=_REQUESTS_SAFE),
            requote_uri(value),
        }
    keep = lambda forms: frozenset(f for f in forms if len(f) >= MIN_SECRET)  # noqa: E731
    return keep(exact), keep(encoded - exact)


@functools.lru_cache(maxsize=1024)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    alternatives: list[tuple[int, str]] = []
    for secret in secrets:
        exact, encoded = _forms(secret)
        alternatives += [(len(f), re.escape(f)) for f in exact]
        alternatives += [(len(f), f"(?i:{re.escape(f)})") for f in encoded]
    if not alternatives:
        return None
    # Longest first: where one form contains another, the whole of it goes.
    ordered = sorted(set(alternatives), key=lambda a: -a[0])
    return re.compile("|".join(a[1] for a in ordered))


def scrub(text: str, secrets: list[str]) -> str:
    """Remove secret values from text meant for a detail, a log line or an API answer.

    Every form a message can carry a secret in goes: raw, repr- and JSON-escaped, the URL encodings of
    urllib and requests, base64 (standard and URL-safe, at any offset in a longer encoded text).
    """
    wanted = tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET}))
    pattern = _pattern(wanted) if wanted else None
    return pattern.sub("***", text) if pattern else text
