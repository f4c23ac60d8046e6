"""Small typed readers for environment settings that fail loudly, naming the variable."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import environ
from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")

_env = environ.Env()


def _read(name: str, default: T, parse: Callable[[str], T], what: str, *, secret: bool = False) -> T:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except (ValueError, TypeError, KeyError, ImproperlyConfigured) as exc:
        # A value that may hold a password (a database URL) is not echoed.
        got = "" if secret else f", got {raw!r}"
        raise ImproperlyConfigured(f"{name}: must be {what}{got}") from exc


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def env_bool(name: str, default: bool) -> bool:
    return _read(name, default, _bool, "a boolean (true/false)")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    def parse(raw: str) -> int:
        value = int(raw)
        if minimum is not None and value < minimum:
            raise ValueError(raw)
        return value

    what = "an integer" if minimum is None else f"an integer >= {minimum}"
    return _read(name, default, parse, what)


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    def parse(raw: str) -> float:
        value = float(raw)
        if minimum is not None and value < minimum:
            raise ValueError(raw)
        return value

    what = "a number" if minimum is None else f"a number >= {minimum}"
    return _read(name, default, parse, what)


def env_str(name: str, default: str) -> str:
    return _read(name, default, str, "a string")


def env_list(name: str, default: list[str]) -> list[str]:
    return _read(name, default, lambda raw: [p.strip() for p in raw.split(",") if p.strip()], "a list")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(raw)
        return raw

    return _read(name, default, parse, "one of " + ", ".join(choices))


DB_ENGINES = ("django.db.backends.sqlite3", "django.db.backends.postgresql")


def _db_url(raw: str) -> dict[str, Any]:
    if "://" not in raw:
        raise ValueError("not a URL")
    config = _env.db_url_config(raw)
    if config.get("ENGINE") not in DB_ENGINES:
        raise ValueError("unsupported database")
    return config


def env_db(name: str, default: str) -> dict[str, Any]:
    what = "a database URL: sqlite:///PATH or postgres://USER[:PASSWORD]@HOST:PORT/NAME"
    return _read(name, _db_url(default), _db_url, what, secret=True)
