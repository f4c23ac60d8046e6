from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tiers import DB_FIXTURES


@pytest.fixture(autouse=True)
def _fresh_status_caches(request) -> Iterator[None]:
    """Each test starts with no cached snapshot or badge (the cache outlives a test's rolled-back rows when it
    is Redis) and reads the host-name map again. Only tests with the database touch the cache (the database
    cache is a table)."""
    from django.core.cache import cache

    from status.middleware import forget_hosts

    if request.node.get_closest_marker("django_db") or DB_FIXTURES & set(request.fixturenames):
        cache.clear()
    forget_hosts()
    yield
    forget_hosts()
