"""Shared pieces of the health API tests: users, tokens, and a database made unreachable for real."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections

from api.models import ApiToken
from health.models import Service
from health.permissions import ACTIONS
from tests.factories import grant
from tests.servers import free_port


def make_user(username: str = "ops", *, staff: bool = True, active: bool = True, perms: tuple[str, ...] = ()) -> Any:
    """A user with the given permissions (health.permissions) and no others."""
    # No password (an unusable one): these users log in by force_login or tokens, and hashing is slow.
    user = get_user_model().objects.create_user(username=username, password=None, is_staff=staff, is_active=active)
    return grant(user, *perms) if perms else user


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def staff_token(username: str = "ops", *, staff: bool = True, perms: tuple[str, ...] = ACTIONS) -> tuple[ApiToken, str]:
    """A token of an operator: staff with every action's permission (pass perms=() for bare staff)."""
    return ApiToken.issue(make_user(username, staff=staff, perms=perms), name="test")


def make_service(name: str, **fields: Any) -> Service:
    defaults: dict[str, Any] = {"kind": "tcp", "settings": {"host": "127.0.0.1", "port": 9}}
    defaults.update(fields)
    return Service.objects.create(name=name, **defaults)


@contextlib.contextmanager
def unreachable_database() -> Iterator[None]:
    """Swap the default connection for one to a database that is not there (a closed port, a missing file).

    The swap is per thread (Django keeps connections thread-local), so the test's own transaction is untouched,
    and the circuit breaker is closed again afterwards so later tests see a healthy database.
    """
    original = connections["default"]
    settings_dict = dict(original.settings_dict)
    if original.vendor == "sqlite":
        settings_dict["NAME"] = "/nonexistent-dir-for-tests/opsportal.sqlite3"
    else:
        settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    broken = type(original)(settings_dict, alias="default")
    connections["default"] = broken
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            broken.close()
        connections["default"] = original
        _close_breaker()


def _close_breaker() -> None:
    import core.db as db

    breaker = getattr(db, "breaker", None)
    if breaker is not None:
        breaker.close()
