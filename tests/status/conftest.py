from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_status_caches() -> Iterator[None]:
    """Each test starts with no cached snapshot or badge (the cache outlives a test's rolled-back rows when it
    is Redis) and reads the host-name map again."""
    from django.core.cache import cache

    from status.middleware import forget_hosts

    cache.clear()
    forget_hosts()
    yield
    forget_hosts()
