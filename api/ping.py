"""Heartbeat pings, Healthchecks.io-compatible: a job calls /ping/<uuid>[/start|/fail|/<exit status>|/log].

GET, HEAD and POST; a POST body's first PING_BODY_MAX bytes are kept. The answer is `OK` (200, text) as
Healthchecks answers, `not found` (404) for an unknown uuid, 400 for an exit status past 255, and 429 past
PING_RATE_LIMIT pings a second for one uuid (a fixed window in the default cache; a cache that fails
never refuses a ping). One indexed lookup (the unique ping_uuid) and one insert a ping.

Pings are never lost: when the database cannot be read or written the ping is answered 200 and spooled
(core.spool) with its own arrival time, and replayed in order when the database is back. The `push`
probe kind (health.probes.push) judges the pings; this view only records them.
"""

from __future__ import annotations

import logging
import time
import uuid

from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from core import clients
from core.db import DB_ERRORS, run_db, unavailable
from core.spool import create_or_spool
from health.models import PING_BODY_MAX, PING_FAIL, PING_LOG, PING_START, PING_SUCCESS, Service

log = logging.getLogger("opsportal.api.ping")

PING_RATE_LIMIT = 5  # pings a second, per uuid
METHODS = ("GET", "HEAD", "POST")
ACTIONS = {"": PING_SUCCESS, "start": PING_START, "fail": PING_FAIL, "log": PING_LOG}
USER_AGENT_MAX = 200


def _text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")


def _allowed(ping_uuid: uuid.UUID) -> bool:
    """Count this ping in its uuid's one-second window; False past the limit. Fails open."""
    key = f"opsportal:ping:{ping_uuid.hex}:{int(time.time())}"
    cache = caches["default"]
    try:
        if cache.add(key, 1, timeout=2):
            return True
        return int(cache.incr(key)) <= PING_RATE_LIMIT
    except Exception as exc:  # noqa: BLE001 - any cache failure (Redis away, the cache table locked)
        log.debug("ping rate limit skipped: the cache failed (%s)", type(exc).__name__)
        return True


def _kind_of(action: str) -> tuple[str, int | None] | None:
    if action in ACTIONS:
        return ACTIONS[action], None
    code = int(action)  # the URL pattern admits digits only
    if code > 255:
        return None
    return (PING_SUCCESS if code == 0 else PING_FAIL), code


@csrf_exempt
def ping(request: HttpRequest, ping_uuid: uuid.UUID, action: str = "") -> HttpResponse:
    received_at = timezone.now()
    if request.method not in METHODS:
        response = _text("method not allowed", 405)
        response["Allow"] = ", ".join(METHODS)
        return response
    kind = _kind_of(action)
    if kind is None:
        return _text("exit status must be 0-255", 400)
    if not _allowed(ping_uuid):
        response = _text("rate limited", 429)
        response["Retry-After"] = "1"
        return response
    body = ""
    if request.method == "POST":
        body = request.read(PING_BODY_MAX).decode("utf-8", errors="replace")
    fields = {
        "service_id": str(ping_uuid),
        "received_at": received_at,
        "kind": kind[0],
        "exit_status": kind[1],
        "body": body,
        "remote_addr": (clients.client_address(request) or "")[:64],
        "user_agent": request.headers.get("User-Agent", "")[:USER_AGENT_MAX],
    }
    try:
        known = run_db(lambda: Service.objects.filter(ping_uuid=ping_uuid).exists())
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        # The database is away: the uuid cannot be checked, so the ping is kept (an unknown one replays as
        # an orphan row that no service reads).
        create_or_spool("health.Ping", retry=False, **fields)
        return _text("OK")
    if not known:
        return _text("not found", 404)
    create_or_spool("health.Ping", **fields)
    return _text("OK")
