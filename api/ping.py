"""Heartbeat pings, Healthchecks.io-compatible: a job calls /ping/<uuid>[/start|/fail|/<exit status>|/log].

GET, HEAD and POST; a POST body's first PING_BODY_MAX bytes are kept, scrubbed of credentials in URLs and
DSNs, secret query parameters and the portal's own secrets. The answer is `OK` (200, text) as Healthchecks
answers, `not found` (404) for an unknown uuid, 400 for an exit status past 255, and 429 past
PING_RATE_LIMIT pings a second for one uuid (a fixed window in the `pings` cache: Redis when REDIS_URL is
set, else each process's memory, so a limit per gunicorn worker; a cache that fails never refuses a ping).
One unit of work a ping: an indexed lookup (the unique ping_uuid) and one insert. A ping that turns the
verdict (a success while the service is not up, a failure while it is) also books the service's next check
for now, so the dashboard shows it within the dispatcher's tick, not at the next interval.

Pings are never lost: when the database cannot be read or written the ping is answered 200 and spooled
(core.spool) with its own arrival time, and replayed in order when the database is back. The `push`
probe kind (health.probes.push) judges the pings; this view only records them.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from core import clients
from core.db import DB_ERRORS, run_db, unavailable
from core.mask import mask
from core.spec import scrub
from core.spool import create_or_spool, replay_pending, write_or_spool
from health.models import PING_BODY_MAX, PING_FAIL, PING_LOG, PING_START, PING_SUCCESS, Ping, Service
from health.probes.base import MISCONFIGURED, UP

log = logging.getLogger("opsportal.api.ping")

PING_RATE_LIMIT = 5  # pings a second, per uuid
METHODS = ("GET", "HEAD", "POST")
ACTIONS = {"": PING_SUCCESS, "start": PING_START, "fail": PING_FAIL, "log": PING_LOG}
USER_AGENT_MAX = 200


def _text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")


def _allowed(who: str) -> bool:
    """Count this ping in its check's one-second window; False past the limit. Fails open."""
    key = f"opsportal:ping:{who}:{int(time.time())}"
    cache = caches["pings"]
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


def _refusal(request: HttpRequest, action: str) -> HttpResponse | tuple[str, int | None]:
    """The answer to a ping that is refused before any lookup, or its kind and exit status."""
    if request.method not in METHODS:
        response = _text("method not allowed", 405)
        response["Allow"] = ", ".join(METHODS)
        return response
    kind = _kind_of(action)
    if kind is None:
        return _text("exit status must be 0-255", 400)
    return kind


def _portal_secrets() -> list[str]:
    password = settings.DATABASES["default"].get("PASSWORD") or ""
    return [settings.SECRET_KEY, settings.PING_KEY, password]


def _body(request: HttpRequest) -> str:
    if request.method != "POST":
        return ""
    body = request.read(PING_BODY_MAX).decode("utf-8", errors="replace")
    return scrub(mask(body), _portal_secrets()) if body else ""


def _fields(request: HttpRequest, service_id: str, kind: tuple[str, int | None], received_at: Any) -> dict[str, Any]:
    return {
        "service_id": service_id,
        "received_at": received_at,
        "kind": kind[0],
        "exit_status": kind[1],
        "body": _body(request),
        "remote_addr": (clients.client_address(request) or "")[:64],
        "user_agent": request.headers.get("User-Agent", "")[:USER_AGENT_MAX],
    }


def _turn(service_id: str, kind: tuple[str, int | None], status: str, received_at: Any) -> None:
    """Book the service's check for now when this ping changes its verdict (rare: one more UPDATE)."""
    if (
        kind[0] not in (PING_SUCCESS, PING_FAIL)
        or status == MISCONFIGURED
        or (kind[0] == PING_SUCCESS) == (status == UP)
    ):
        return
    try:
        run_db(
            lambda: Service.objects.filter(ping_uuid=service_id, next_due_at__gt=received_at).update(
                next_due_at=received_at
            )
        )
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        log.debug("ping: the early check was not booked (%s); the next interval judges it", type(exc).__name__)


def _store(ping_uuid: uuid.UUID, fields: dict[str, Any]) -> str | None:
    """One unit: the service's status by its uuid (the unique index), and the ping's row; None when unknown."""
    status = Service.objects.filter(ping_uuid=ping_uuid).values_list("status", flat=True).first()
    if status is not None:
        Ping.objects.bulk_create([Ping(**fields)])  # bulk_create: no save() signals or refresh, one INSERT
    return status


def _record(fields: dict[str, Any], status: str) -> HttpResponse:
    if create_or_spool("health.Ping", **fields) is not None:
        _turn(fields["service_id"], (fields["kind"], fields["exit_status"]), status, fields["received_at"])
    return _text("OK")


def _limited(key: str) -> HttpResponse | None:
    if _allowed(key):
        return None
    response = _text("rate limited", 429)
    response["Retry-After"] = "1"
    return response


@csrf_exempt
def ping(request: HttpRequest, ping_uuid: uuid.UUID, action: str = "") -> HttpResponse:
    received_at = timezone.now()
    kind = _refusal(request, action)
    if isinstance(kind, HttpResponse):
        return kind
    limited = _limited(ping_uuid.hex)
    if limited is not None:
        return limited
    fields = _fields(request, str(ping_uuid), kind, received_at)
    try:
        replay_pending()  # what the spool holds goes first: a ping never overtakes an older one
        status = run_db(_store, ping_uuid, fields)
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        # The database is away: the uuid cannot be checked, so the ping is kept (an unknown one replays as
        # an orphan row that no service reads).
        create_or_spool("health.Ping", retry=False, **fields)
        return _text("OK")
    if status is None:
        return _text("not found", 404)
    _turn(fields["service_id"], kind, status, received_at)
    return _text("OK")


@csrf_exempt
def ping_by_name(request: HttpRequest, ping_key: str, name: str, action: str = "") -> HttpResponse:
    """/ping/<PING_KEY>/<service>[/…]: the same pings by the service's name, for cron lines written by hand.

    404 unless PING_KEY is set and matches (compared in constant time). While the database is away the name
    cannot be resolved: the ping is spooled by name (`named_ping`) and resolved when it is replayed."""
    received_at = timezone.now()
    secret = settings.PING_KEY
    if not secret or not hmac.compare_digest(ping_key.encode(), secret.encode()):
        return _text("not found", 404)
    kind = _refusal(request, action)
    if isinstance(kind, HttpResponse):
        return kind
    limited = _limited(f"name:{name}")
    if limited is not None:
        return limited
    try:
        found = run_db(lambda: Service.objects.filter(name=name).values_list("ping_uuid", "status").first())
    except DB_ERRORS as exc:
        if not unavailable(exc):
            raise
        write_or_spool("named_ping", {"name": name, **_fields(request, "", kind, received_at)}, retry=False)
        return _text("OK")
    if found is None:
        return _text("not found", 404)
    return _record(_fields(request, str(found[0]), kind, received_at), found[1])
