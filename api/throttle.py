"""A per-address limit on bearer requests with a bad token, counted in Django's default cache.

The default cache is the shared one (the DatabaseCache table `opsportal_cache`, or Redis with REDIS_URL),
so the count holds across web workers and machines. After API_BAD_TOKEN_LIMIT bad tokens (default 20)
from one address in a window of API_BAD_TOKEN_WINDOW seconds (default 60, a fixed window), every bearer
request from that address answers 429 with `Retry-After` until the window ends: a right guess is refused
too, so guessing gains nothing. Other addresses are not affected.

The client address is the login throttle's (core.clients.client_address): REMOTE_ADDR, or
with LOGIN_PROXY_COUNT proxies in front the entry the outermost of them wrote into X-Forwarded-For, so
behind the shipped nginx one guesser does not lock out every client. Without LOGIN_PROXY_COUNT the header
is ignored, since any client can forge it.

On the DatabaseCache a count is one transaction (its row locked with SELECT ... FOR UPDATE on PostgreSQL;
SQLite's IMMEDIATE transaction holds the write lock from BEGIN): BaseCache.incr is a get then a set, which
loses concurrent failures across workers. Redis' INCR is atomic by itself.

A cache that fails (its table missing, Redis away) never turns a request into an error: the limit is
skipped (fail open) and the failure logged, at most once a minute.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.db import connections, router, transaction
from django.http import HttpRequest

from api.base import ApiError
from core import clients

log = logging.getLogger("opsportal.health.auth")

T = TypeVar("T")
KEY_PREFIX = "opsportal:bad-token"
_UNSAFE_KEY_CHARS = re.compile(r"[^0-9A-Za-z.:_-]")
_CACHE_WARN_EVERY_S = 60.0
_last_cache_warning = 0.0


def client_address(request: HttpRequest) -> str:
    address = clients.client_address(request) or "unknown"
    # Cache keys must be short and plain; an address never needs more.
    return _UNSAFE_KEY_CHARS.sub("_", address)[:64]


def _limits() -> tuple[int, int]:
    return int(getattr(settings, "API_BAD_TOKEN_LIMIT", 20)), int(getattr(settings, "API_BAD_TOKEN_WINDOW", 60))


def _window(now: float, window: int) -> tuple[int, float]:
    """The current fixed window's number and how many seconds are left of it."""
    bucket = int(now // window)
    return bucket, (bucket + 1) * window - now


def _key(address: str, bucket: int) -> str:
    return f"{KEY_PREFIX}:{address}:{bucket}"


def _cached(call: Callable[[], T], fallback: T) -> T:
    """Run one cache call; on any failure log it (rate-limited) and return `fallback` (fail open)."""
    global _last_cache_warning
    cache = caches["default"]
    try:
        if isinstance(cache, DatabaseCache):
            alias = router.db_for_write(cache.cache_model_class)
            if connections[alias].in_atomic_block:
                # A failed query (the table missing) would break the caller's transaction: a savepoint keeps it.
                with transaction.atomic(using=alias):
                    return call()
        return call()
    except Exception as exc:
        now = time.monotonic()
        if now - _last_cache_warning >= _CACHE_WARN_EVERY_S:
            _last_cache_warning = now
            log.warning("bad-token limit skipped: the cache failed (%s: %s)", type(exc).__name__, exc)
        return fallback


def _incr_in_database(cache: DatabaseCache, key: str, timeout: int) -> int:
    """Add one to `key` in one transaction that no other count interleaves with."""
    alias = router.db_for_write(cache.cache_model_class)
    connection = connections[alias]
    with transaction.atomic(using=alias):
        cache.add(key, 0, timeout=timeout)
        if connection.features.has_select_for_update:
            # PostgreSQL: wait for any other count of this key to commit, then read its result.
            table, column = connection.ops.quote_name(cache._table), connection.ops.quote_name("cache_key")
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT 1 FROM {table} WHERE {column} = %s FOR UPDATE",  # noqa: S608 (quoted names)
                    [cache.make_and_validate_key(key)],
                )
        count = int(cache.get(key, 0)) + 1
        cache.set(key, count, timeout=timeout)
    return count


def check(address: str, now: float | None = None) -> None:
    """429 with Retry-After when `address` has used up its bad tokens in this window."""
    limit, window = _limits()
    bucket, left = _window(time.time() if now is None else now, window)
    key = _key(address, bucket)
    count = _cached(lambda: caches["default"].get(key, 0), 0)
    if count >= limit:
        retry_after = max(1, math.ceil(left))
        raise ApiError(
            f"too many requests with a bad API token from this address; retry in {retry_after} s",
            429,
            {"Retry-After": str(retry_after)},
        )


def record_failure(address: str, now: float | None = None) -> int:
    """Count one bad token from `address`; the count in this window (0 when the cache failed)."""
    limit, window = _limits()
    bucket, left = _window(time.time() if now is None else now, window)
    key = _key(address, bucket)

    # The key outlives its window by a second: it is never read after, so it only has to expire.
    timeout = math.ceil(left) + 1

    def incr() -> int:
        cache = caches["default"]
        if isinstance(cache, DatabaseCache):
            return _incr_in_database(cache, key, timeout)
        cache.add(key, 0, timeout=timeout)
        return int(cache.incr(key))

    count = _cached(incr, 0)
    if count == limit:
        log.warning(
            "bad-token limit reached for %s: %d bad tokens in %d s; refusing its tokens", address, count, window
        )
    return count
