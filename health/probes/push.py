"""A heartbeat: the job calls us (/ping/<uuid>, api.ping) and this kind judges the pings it left.

`up` when the last ping is a success on time (the period, or the next cron tick in `timezone`, after it,
plus `grace`); `down` when late or the last ping reported a failure; a `start` with no end within
`max_runtime` + grace is `down`, a start → success longer than `max_runtime` `degraded`. Reads only:
one indexed query of the service's latest pings (a second one, for the service's creation time, only
when it never pinged). Writes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models.functions import Substr
from django.utils import timezone

from core.spec import ConfigError, Key
from health.models import PING_LOG, Ping, Service
from health.probes.base import DEGRADED, DOWN, UP, Probe, ProbeConfigError, ProbeOutcome
from health.windows import UTC, cron_matches, parse_cron, zone

# How far ahead the next cron tick is looked for: a schedule that never fires within it is refused.
CRON_HORIZON = dt.timedelta(days=400)
SUCCESS, START, FAIL = "success", "start", "fail"
# How much of the deciding ping's body the detail quotes (the whole body stays on the Ping row).
QUOTE_CHARS = 200
# A verdict turns at its deadline's first second past it (`now > expected`).
TURN = dt.timedelta(seconds=1)


def verify_wait(kind: str, cfg: dict[str, Any] | None) -> float:
    """How long a recovery of this service waits for its proof: a heartbeat's success ping (verify_timeout,
    else grace), 0 for every other kind (re-probed at once). Counted in the stale bound (recovery.actions.base)."""
    if kind != "push":
        return 0.0
    cfg = cfg or {}
    return float(cfg.get("verify_timeout") or cfg.get("grace") or PushProbe.keys["grace"].default)


def check_schedule(cfg: dict[str, Any], where: str) -> None:
    """Exactly one of `period` and `cron`; a cron expression that parses and fires; a known time zone."""
    if (cfg.get("period") is None) == (cfg.get("cron") is None):
        raise ConfigError(f"{where}.period", "give period (seconds) or cron, exactly one")
    if cfg.get("cron") is None:
        if cfg.get("timezone") is not None:
            raise ConfigError(f"{where}.timezone", "goes with cron, not period")
        return
    try:
        fields = parse_cron(cfg["cron"])
        tz = zone(cfg.get("timezone") or "UTC")
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc.where}", exc.message) from None
    if next_tick(fields, tz, timezone.now()) is None:
        raise ConfigError(f"{where}.cron", "never fires (no such date)")


def next_tick(fields: tuple[set[int], ...], tz: dt.tzinfo, after: dt.datetime) -> dt.datetime | None:
    """The first minute after `after` that the cron fields match in local time (DST included), in UTC."""
    minutes, hours, _, _, _ = fields
    at = after.astimezone(UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    end = at + CRON_HORIZON
    while at < end:
        local = at.astimezone(tz)
        day_ok = cron_matches((set(range(60)), set(range(24)), *fields[2:]), local)
        if not day_ok:  # on to the next local midnight (wall time, so a 23- or 25-hour day is right)
            midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tzinfo=tz)
            at = max(midnight.astimezone(UTC), at + dt.timedelta(minutes=1))
        elif local.hour not in hours:
            at += dt.timedelta(minutes=60 - local.minute)
        elif local.minute not in minutes:
            at += dt.timedelta(minutes=1)
        else:
            return at
    return None


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds():.1f} s"


def _quote(body: str) -> str:
    """The start of a ping's body for the detail: one line, whitespace collapsed (the body was scrubbed at arrival)."""
    text = " ".join(body.split())
    if not text:
        return ""
    return f'; said "{text[:QUOTE_CHARS]}{"…" if len(text) > QUOTE_CHARS else ""}"'


def _up(detail: str, turns_at: dt.datetime) -> ProbeOutcome:
    return ProbeOutcome(UP, detail=detail, recheck_at=turns_at + TURN)


class PushProbe(Probe):
    """A heartbeat (cron job, backup, ETL): judged from the pings it sends to /ping/<uuid>."""

    keys = {
        "period": Key("int", minimum=1, help="seconds between pings (or give cron)"),
        "cron": Key("str", help='when the job runs, a cron expression ("0 3 * * *"; or give period)'),
        "timezone": Key("str", help="the cron expression's IANA time zone (default UTC; DST is honoured)"),
        "grace": Key("int", default=60, minimum=1, help="seconds a ping may be late before the service is down"),
        "max_runtime": Key("int", minimum=1, help="seconds a start → success may take: longer is degraded"),
        "verify_timeout": Key(
            "int", minimum=1, maximum=3600, help="seconds a recovery waits for a success ping (default: grace)"
        ),
    }

    @classmethod
    def validate_settings(cls, settings: Any, where: str) -> dict[str, Any]:
        cleaned = super().validate_settings(settings, where)
        check_schedule(cleaned, where)
        return cleaned

    def _due_after(self, moment: dt.datetime) -> dt.datetime:
        """When the next ping is expected, the last one having come at `moment` (grace not included)."""
        if self.cfg.get("period") is not None:
            return moment + dt.timedelta(seconds=self.cfg["period"])
        tick = next_tick(parse_cron(self.cfg["cron"]), zone(self.cfg.get("timezone") or "UTC"), moment)
        return tick if tick is not None else moment + CRON_HORIZON

    def run(self) -> ProbeOutcome:
        try:
            check_schedule(self.cfg, "settings")
        except ConfigError as exc:
            raise ProbeConfigError(f"config error: {exc}") from None
        now = timezone.now()
        grace = dt.timedelta(seconds=self.cfg["grace"])
        max_runtime = self.cfg.get("max_runtime")
        # One indexed query: the two latest pings that carry a state (ping_service_time).
        rows = list(
            Ping.objects.filter(service__name=self.service_name)
            .exclude(kind=PING_LOG)
            .order_by("-received_at")
            .values_list("kind", "received_at", "exit_status", Substr("body", 1, QUOTE_CHARS + 1))[:2]
        )
        if not rows:
            created = Service.objects.filter(name=self.service_name).values_list("created_at", flat=True).first()
            since = created or now
            expected = self._due_after(since) + grace
            if now > expected:
                return ProbeOutcome(DOWN, detail=f"no ping received yet, expected by {_when(expected)}")
            return _up(f"waiting for the first ping, expected by {_when(expected)}", expected)
        kind, at, exit_status, body = rows[0]
        previous = rows[1] if len(rows) > 1 else None
        if kind == FAIL:
            code = f" (exit {exit_status})" if exit_status is not None else ""
            return ProbeOutcome(DOWN, detail=f"job reported failure{code} at {_when(at)}{_quote(body)}")
        if kind == START:
            running = now - at
            if max_runtime is not None:
                limit = dt.timedelta(seconds=max_runtime) + grace
                if running > limit:
                    return ProbeOutcome(
                        DOWN,
                        detail=f"started at {_when(at)}, no end within max_runtime {max_runtime} s + grace "
                        f"{self.cfg['grace']} s (running {_seconds(running)})",
                    )
                return _up(f"running since {_when(at)} ({_seconds(running)})", at + limit)
            # No max_runtime: a start says nothing of the schedule; the last end before it decides.
            if previous is not None and previous[0] == FAIL:
                code = f" (exit {previous[2]})" if previous[2] is not None else ""
                return ProbeOutcome(
                    DOWN, detail=f"job reported failure{code} at {_when(previous[1])}{_quote(previous[3])}"
                )
            last_end = previous[1] if previous is not None else at
            expected = self._due_after(last_end) + grace
            if now > expected:
                return ProbeOutcome(
                    DOWN, detail=f"no ping since {_when(last_end)}, expected by {_when(expected)} (started {_when(at)})"
                )
            return _up(f"running since {_when(at)} ({_seconds(running)})", expected)
        # The last ping is a success.
        expected = self._due_after(at) + grace
        if now > expected:
            return ProbeOutcome(DOWN, detail=f"no ping since {_when(at)}, expected by {_when(expected)}")
        detail = f"last ping {_when(at)}, next expected by {_when(expected)}"
        if previous is not None and previous[0] == START:
            runtime = at - previous[1]
            detail += f"; ran {_seconds(runtime)}"
            if max_runtime is not None and runtime > dt.timedelta(seconds=max_runtime):
                return ProbeOutcome(
                    DEGRADED, detail=f"{detail}, longer than max_runtime {max_runtime} s", recheck_at=expected + TURN
                )
        return _up(detail + _quote(body), expected)
