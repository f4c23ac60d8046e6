"""Declarative key specs for configuration tables, with errors that name the bad key.

One mechanism validates a service's kind settings, a recovery action, a tunnel and
every table of the TOML file: `service[3].interval: must be a positive integer`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool))


_CHECKS: dict[str, tuple[Any, str]] = {
    "str": (lambda v: isinstance(v, str) and v != "", "must be a non-empty string"),
    "text": (lambda v: isinstance(v, str), "must be a string"),
    "slug": (
        lambda v: isinstance(v, str) and bool(SLUG.match(v)),
        "must be a slug (lowercase letters, digits, '-' or '_', at most 100)",
    ),
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
    "dict[str]": (
        lambda v: isinstance(v, dict) and all(isinstance(i, str) for i in v.values()),
        "must be a table of strings",
    ),
}


def _check(key: Key, value: Any, where: str) -> Any:
    ok, message = _CHECKS[key.type]
    if not ok(value):
        if key.type == "int" and key.minimum == 1:
            message = "must be a positive integer"
        raise ConfigError(where, message)
    numbers = [value] if _is_num(value) else value if key.type == "list[int]" else []
    for n in numbers:
        if key.minimum is not None and n < key.minimum:
            if key.type == "int" and key.minimum == 1:
                raise ConfigError(where, "must be a positive integer")
            raise ConfigError(where, f"must be at least {key.minimum:g}")
        if key.maximum is not None and n > key.maximum:
            raise ConfigError(where, f"must be at most {key.maximum:g}")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(where, "must be one of " + ", ".join(map(str, key.choices)))
    return value


def validate(spec: dict[str, Key], data: Any, where: str, *, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check `data` against `spec`; return the given keys (defaults are not filled in)."""
    if not isinstance(data, dict):
        raise ConfigError(where, "must be a table")
    for name in data:
        if name not in spec and name not in ignore:
            raise ConfigError(f"{where}.{name}" if where else name, "unknown key")
    cleaned: dict[str, Any] = {}
    for name, key in spec.items():
        path = f"{where}.{name}" if where else name
        if name not in data or data[name] is None:
            if key.required:
                raise ConfigError(path, "is required")
            continue
        cleaned[name] = _check(key, data[name], path)
    return cleaned


def with_defaults(spec: dict[str, Key], data: dict[str, Any]) -> dict[str, Any]:
    filled = {name: key.default for name, key in spec.items()}
    filled.update(data)
    return filled


def expand_env(value: str, found: list[str] | None = None) -> str:
    """Replace `${VAR}` with the variable's value; `found` collects the values (they are secrets)."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError("", f"environment variable {name} is not set")
        secret = os.environ[name]
        if found is not None and secret:
            found.append(secret)
        return secret

    return _ENV_REF.sub(sub, value)


def env_value(name: str, found: list[str] | None = None) -> str:
    """The value of the variable named by a `*_env` key; it is a secret."""
    value = os.environ.get(name)
    if not value:
        raise ConfigError("", f"environment variable {name} is not set")
    if found is not None:
        found.append(value)
    return value


def scrub(text: str, secrets: list[str]) -> str:
    """Remove secret values from text meant for a detail, a log line or an API answer."""
    # A secret may also appear URL-encoded (an error message that quotes the request URL).
    forms = {f for s in secrets for f in (s, quote(s, safe=""), quote_plus(s)) if len(s) >= 3}
    for secret in sorted(forms, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
