"""Shared pieces of the health API tests: users, tokens, and a database made unreachable for real."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connections

from api.models import ApiToken
from health.permissions import ACTIONS
from tests.factories import make_service, make_user
from tests.servers import free_port


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def staff_token(username: str = "ops", *, staff: bool = True, perms: tuple[str, ...] = ACTIONS) -> tuple[ApiToken, str]:
    """A token of an operator: staff with every action's permission (pass perms=() for bare staff)."""
    return ApiToken.issue(make_user(username, staff=staff, perms=perms), name="test")


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


__all__ = ["bearer", "make_service", "make_user", "staff_token", "unreachable_database"]
