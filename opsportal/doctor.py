"""`manage.py doctor`: check an installation and say what is wrong and how to fix it.

One small function per check, each returning a Finding. A check never raises: an unexpected error
becomes a failed finding, so the command always prints a full report instead of a traceback.
Checks that need the database are skipped (and say so) when the database itself is unreachable.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import NON_FIELD_ERRORS, ImproperlyConfigured, ValidationError
from django.db import DatabaseError, connection
from django.db.models import Model
from django.http.request import validate_host
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core import files, procs
from core.envcheck import Unset, unset_in
from core.liveness import live_owners
from core.spec import ConfigError, scrub
from dispatch.scheduler import schedule_specs, scheduler_status
from health.models import MaintenanceWindow, Service
from health.probes.push import verify_wait
from notify.models import Channel
from recovery.actions import registry as action_registry
from recovery.actions.base import stale_bound_problem
from recovery.models import RecoveryAction
from status.models import StatusPage
from tunnels.models import Tunnel

log = logging.getLogger("opsportal.doctor")

# Web, worker and database clocks may differ by this much: the cadence promise is ±5 s of due.
MAX_CLOCK_SKEW_S = 2.0
# Django's own thresholds for a strong SECRET_KEY (check --deploy, security.W009).
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE = 5
# Values from examples and templates that must never reach production.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "test-only-not-secret", "django-insecure-", "secret_key")
PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)
SCHEDULE_PREFIX = "opsportal-"


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False


def ok(check: str, detail: str) -> Finding:
    return Finding(check, True, detail)


def problem(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, False, detail, fix)


T = TypeVar("T")


def first_of(found: list[T], most: int) -> tuple[list[T], str]:
    """The first `most` findings, and " (and N more)" for the rest ("" when none is left out)."""
    return found[:most], f" (and {len(found) - most} more)" if len(found) > most else ""


def _db_secrets() -> list[str]:
    password = settings.DATABASES["default"].get("PASSWORD") or ""
    return [password, settings.REDIS_URL] if settings.REDIS_URL else [password]


def _error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return scrub(text, _db_secrets())[:300]


def _db_label() -> str:
    db = settings.DATABASES["default"]
    return f"{connection.vendor} database {str(db.get('NAME'))!r}"


def check_database() -> Finding:
    from django.db.migrations.executor import MigrationExecutor

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return problem(
            "database",
            f"cannot reach the {_db_label()}: {_error(exc)}",
            "check DATABASE_URL and that the server runs and accepts this user (systemctl status postgresql)",
        )
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        first = plan[0][0]
        return problem(
            "database",
            f"{_db_label()}: {len(plan)} migration(s) not applied (first: {first.app_label}.{first.name})",
            "run `python manage.py migrate` (see docs/deploy.md, Upgrades)",
        )
    return ok("database", f"{_db_label()} reachable, all migrations applied")


def check_cache() -> Finding:
    aliases = sorted({"default", settings.Q_CLUSTER.get("cache", "default")})
    for alias in aliases:
        backend = settings.CACHES.get(alias, {}).get("BACKEND", "")
        if backend in PER_PROCESS_CACHES:
            return problem(
                "cache",
                f"cache {alias!r} is {backend.rsplit('.', 1)[-1]}: each process sees its own, so the web "
                "cannot see the qcluster's stats or share rate limits",
                "set REDIS_URL, or use the database cache (the default without REDIS_URL)",
            )
        key, value = f"opsportal:doctor:{uuid.uuid4().hex}", uuid.uuid4().hex
        try:
            cache = caches[alias]
            cache.set(key, value, 30)
            got = cache.get(key)
            cache.delete(key)
        except Exception as exc:  # every backend has its own errors (DatabaseError, redis.ConnectionError…)
            fix = (
                "run `python manage.py createcachetable`"
                if "DatabaseCache" in backend
                else "check REDIS_URL and that redis-server runs (systemctl status redis-server)"
            )
            return problem("cache", f"cache {alias!r} ({backend.rsplit('.', 1)[-1]}) failed: {_error(exc)}", fix)
        if got != value:
            return problem(
                "cache",
                f"cache {alias!r} did not keep a value it was given",
                "check the cache server's memory limit and eviction policy",
            )
    return ok("cache", f"shared cache works ({', '.join(aliases)}: {backend.rsplit('.', 1)[-1]})")


def check_broker() -> Finding:
    from django_q.brokers import get_broker
    from django_q.brokers.orm import ORM

    try:
        broker = get_broker()
        if isinstance(broker, ORM):
            # The ORM broker's ping() is always True: ask its table instead.
            from django_q.models import OrmQ

            OrmQ.objects.using(settings.Q_CLUSTER.get("orm", "default")).exists()
        elif not broker.ping():
            raise ConnectionError("ping failed")
    except Exception as exc:  # redis.ConnectionError, DatabaseError, a bad broker class…
        return problem(
            "broker",
            f"Django-Q2 broker unreachable: {_error(exc)}",
            "check REDIS_URL and that redis-server runs"
            if settings.REDIS_URL
            else "run `python manage.py migrate` (the ORM broker's table lives in the database)",
        )
    return ok("broker", f"Django-Q2 broker reachable ({type(broker).__name__})")


def check_scheduler() -> Finding:
    status = scheduler_status()
    if status.get("status") == "ok":
        # Each loop's identity is `kind@host:pid:nonce`: show where the probing runs (one per qcluster).
        loops = sorted(owner.rsplit(":", 1)[0] for owner in live_owners(timezone.now()))
        where = f"; {len(loops)} dispatcher loop(s) alive: {', '.join(loops)}" if loops else ""
        return ok("scheduler", f"qcluster heartbeat fresh (last run {status.get('lastRunAt')}){where}")
    if status.get("lastRunAt"):
        detail = f"qcluster heartbeat is late: last run {status['lastRunAt']}, {status.get('lagSeconds')} s ago"
    else:
        detail = "no qcluster heartbeat: no scheduler has run against this database"
    return problem(
        "scheduler",
        detail,
        "start the workers: `systemctl start opsportal-qcluster@1` (or `python manage.py qcluster`); "
        "see `journalctl -u 'opsportal-qcluster@*'`",
    )


def log_directories() -> list[Path]:
    """Where the portal writes logs: LOG_DIR if set, each file handler's directory, else the var dir."""
    dirs: list[Path] = []
    if getattr(settings, "LOG_DIR", None):
        dirs.append(Path(settings.LOG_DIR))
    for handler in settings.LOGGING.get("handlers", {}).values():
        if handler.get("filename"):
            dirs.append(Path(handler["filename"]).parent)
    if not dirs:
        dirs.append(Path(settings.VAR_DIR))
    return list(dict.fromkeys(dirs))


def check_log_dir() -> Finding:
    for path in log_directories():
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
                pass
        except OSError as exc:
            return problem(
                "logs",
                f"cannot write in {path}: {exc.strerror or exc}",
                f"create {path} as a directory owned by the service user (docs/deploy.md: "
                "`install -d -o opsportal -g opsportal ...`), or point LOG_DIR elsewhere",
            )
    return ok("logs", "writable: " + ", ".join(str(p) for p in log_directories()))


# How many loose paths doctor names one by one; the rest are counted.
MAX_LOOSE_SHOWN = 5


def check_file_modes() -> Finding:
    """The var dir, the database, the spool, the tunnel ledger and the portal's logs: owner-only (files.py)."""
    var_dir, log_dir = Path(settings.VAR_DIR), Path(settings.LOG_DIR)
    # The same set settings.py tightens at start: what the portal made, owned by this user.
    paths = files.portal_paths(var_dir, log_dir, settings.DATABASES["default"], public=[Path(settings.STATIC_ROOT)])
    found = files.loose(paths)
    umask = files.current_umask()
    if found:
        shown, more = first_of(found, MAX_LOOSE_SHOWN)
        return problem(
            "files",
            ", ".join(f"{path} is {mode:04o}" for path, mode in shown)
            + more
            + ": other local users can read what the portal keeps there (the database holds live sessions)",
            "; ".join(files.fix_command(path, mode) for path, mode in shown)
            # Only the paths named: a recursive chmod of LOG_DIR=/var/log would lock other services out.
            + (f" (all {len(found)}: `chmod go-rwx {' '.join(str(p) for p, _ in found)}`)" if more else ""),
        )
    if umask & files.OWNER_ONLY_MASK != files.OWNER_ONLY_MASK:
        return problem(
            "files",
            f"this process's umask is {umask:04o}: the files it creates would be readable by other users",
            "settings.py must call core.files.owner_only_umask() before it creates anything",
        )
    detail = f"owner-only: {var_dir}, {log_dir} (umask {umask:04o})"
    if log_dir not in paths:
        # Other services' logs share it (LOG_DIR=/var/log), or another user owns it: its mode is theirs.
        detail = f"owner-only: {var_dir}, the portal's logs in {log_dir} (the directory's mode is left as it is)"
        detail += f" (umask {umask:04o})"
    if files.tightened:
        names = ", ".join(f"{path} (was {mode:04o})" for path, mode in files.tightened[:MAX_LOOSE_SHOWN])
        detail += f"; tightened at start: {names}"
    return ok("files", detail)


def check_secret_key() -> Finding:
    try:
        key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        key = ""
    fix = (
        "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(50))'` and set SECRET_KEY "
        "in the env file (never commit it)"
    )
    if not key:
        return problem("secret_key", "SECRET_KEY is empty", fix)
    lowered = key.lower()
    marker = next((m for m in PLACEHOLDER_MARKERS if m in lowered), None)
    if marker:
        return problem("secret_key", f"SECRET_KEY is a placeholder or example value (contains {marker!r})", fix)
    if len(key) < SECRET_KEY_MIN_LENGTH or len(set(key)) < SECRET_KEY_MIN_UNIQUE:
        return problem(
            "secret_key",
            f"SECRET_KEY is weak: {len(key)} characters, {len(set(key))} distinct "
            f"(needs >= {SECRET_KEY_MIN_LENGTH} and >= {SECRET_KEY_MIN_UNIQUE})",
            fix,
        )
    return ok("secret_key", f"SECRET_KEY set ({len(key)} characters)")


def check_debug() -> Finding:
    if settings.DEBUG:
        return problem(
            "debug",
            "DEBUG is on: error pages show settings and code to anyone",
            "set DEBUG=false in the env file",
        )
    return ok("debug", "DEBUG is off")


def check_schedules() -> Finding:
    from django_q.models import Schedule

    present = set(Schedule.objects.filter(name__startswith=SCHEDULE_PREFIX).values_list("name", flat=True))
    missing = sorted(set(schedule_specs()) - present)
    if missing:
        return problem(
            "schedules",
            f"Django-Q2 schedule(s) missing: {', '.join(missing)}: the qcluster would not run them",
            "run `python manage.py migrate` (it creates the schedules by name, idempotently)",
        )
    return ok("schedules", f"{len(present)} schedule(s): {', '.join(sorted(present))}")


def database_now() -> datetime:
    """The database server's clock (PostgreSQL's clock_timestamp(); SQLite shares this host's clock)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0]
        cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
        return datetime.fromisoformat(cursor.fetchone()[0] + "+00:00")


def check_clock() -> Finding:
    db_now = database_now()
    skew = (timezone.now() - db_now).total_seconds()
    fix = "keep every host's clock synchronised (`timedatectl set-ntp true`, chrony or systemd-timesyncd)"
    if abs(skew) > MAX_CLOCK_SKEW_S:
        return problem(
            "clock", f"this host's clock is {skew:+.1f} s off the database's (limit ±{MAX_CLOCK_SKEW_S:g} s)", fix
        )
    # The heartbeat is written with the worker's clock: a time ahead of the database's means a fast worker
    # clock (a slow one is indistinguishable from a late heartbeat, which the scheduler check reports).
    last = scheduler_status().get("lastRunAt")
    written = parse_datetime(last) if isinstance(last, str) else last
    if written is not None:
        ahead = (written - database_now()).total_seconds()
        if ahead > MAX_CLOCK_SKEW_S:
            return problem("clock", f"the worker's heartbeat is {ahead:.1f} s in the database's future", fix)
    return ok("clock", f"web and database clocks agree within {abs(skew):.2f} s")


def check_static() -> Finding:
    from django.contrib.staticfiles.storage import ManifestFilesMixin
    from django.core.files.storage import storages

    storage = storages["staticfiles"]
    if not isinstance(storage, ManifestFilesMixin):
        return ok("static", "static files served as they are (no manifest needed)")
    if storage.read_manifest() is None:
        return problem(
            "static",
            f"no static files manifest in {settings.STATIC_ROOT}: every page would fail",
            "run `python manage.py collectstatic --noinput` (part of every install and upgrade)",
        )
    return ok("static", f"collected static files in {settings.STATIC_ROOT}")


# How many unset variables doctor names one by one; the rest are counted.
MAX_UNSET_SHOWN = 8


def unset_variables() -> list[Unset]:
    """Variables the configuration in the database needs (`${VAR}`, `*_env`) that this process lacks."""
    found: list[Unset] = []
    for service in Service.objects.order_by("name"):
        found += unset_in(f"service {service.name}", service.settings or {})
    actions = RecoveryAction.objects.select_related("service").order_by("service__name", "position", "pk")
    index: dict[int, int] = {}
    for action in actions:
        i = index[action.service_id] = index.get(action.service_id, -1) + 1
        found += unset_in(f"service {action.service.name} recovery[{i}]", action.settings or {})
    for tunnel in Tunnel.objects.order_by("name"):  # expanded when the connector starts
        found += unset_in(f"tunnel {tunnel.name}", {"command": tunnel.command or [], "env": tunnel.env or {}})
    for channel in Channel.objects.order_by("name"):  # expanded at send time
        found += unset_in(f"channel {channel.name}", {"url": channel.url})
    return found


def check_variables() -> Finding:
    found = unset_variables()
    if not found:
        return ok("variables", "every variable the configuration names is set")
    shown, more = first_of(found, MAX_UNSET_SHOWN)
    names = list(dict.fromkeys(u.variable for u in shown))
    return problem(
        "variables",
        "not set: "
        + "; ".join(u.problem() for u in shown)
        + more
        + ": a service that needs one is `misconfigured`, an action, tunnel or channel fails, until it is set",
        "; ".join(f"set {name} in the environment or .env" for name in names)
        + ", then restart the portal (web and qcluster: both are read at start)",
    )


def check_recovery_bounds() -> Finding:
    """Every recovery action ends within RECOVERY_STALE_AFTER (`timeout + verify_delay`): importconfig and the
    admin refuse a longer one, but RECOVERY_STALE_AFTER may have been lowered since it was saved."""
    too_long = []
    for action, i in _actions_indexed():
        why = stale_bound_problem(
            action.timeout, action.verify_delay, verify_wait(action.service.kind, action.service.settings)
        )
        if why:
            too_long.append(f"{action.service.name} recovery[{i}]: {why}")
    bound = settings.RECOVERY_STALE_AFTER
    if not too_long:
        return ok("recovery", f"every recovery action ends within RECOVERY_STALE_AFTER ({bound} s)")
    shown, more = first_of(too_long, MAX_UNSET_SHOWN)
    return problem(
        "recovery",
        "; ".join(shown) + more,
        "shorten the action's timeout or verify_delay (and import the configuration again), or raise "
        "RECOVERY_STALE_AFTER and restart the portal",
    )


def _actions_indexed() -> list[tuple[RecoveryAction, int]]:
    """Each action with its index among its service's actions (as `recovery[i]` in the config file)."""
    out = []
    index: dict[int, int] = {}
    for action in RecoveryAction.objects.select_related("service").order_by("service__name", "position", "pk"):
        index[action.service_id] = index.get(action.service_id, -1) + 1
        out.append((action, index[action.service_id]))
    return out


def check_supervisor() -> Finding:
    """Commands (the command probe and action, restart_process) run under GNU coreutils `timeout`, which
    kills a child's whole group at its deadline even when the portal dies mid-run (procs.supervisor)."""
    path = procs.supervisor()
    if path is not None:
        return ok(
            "supervisor",
            f"commands run under {path} (GNU coreutils): killed at their deadline even if the portal dies mid-run",
        )
    found = shutil.which("timeout")
    why = f"{found} is not GNU coreutils timeout" if found else "no `timeout` on PATH"
    return problem(
        "supervisor",
        f"{why}: command probes and actions run unsupervised: a child outlives a portal killed mid-run (SIGKILL, "
        "OOM) until it ends by itself",
        "install GNU coreutils (Debian/Ubuntu: coreutils; Alpine: `apk add coreutils`) so that `timeout --version` "
        "says GNU coreutils, first on the portal's PATH, then restart the portal (web and qcluster)",
    )


def out_of_bounds() -> list[str]:
    """Each stored value the admin would refuse today (its field's validators, its kind's keys, the model's
    own checks): rows written before the bounds keep what they held (a migration adds validators only)."""
    found: list[str] = []
    for service in Service.objects.order_by("name"):
        found += _refused(f"service {service.name}", service, service.clean)
    for action, i in _actions_indexed():
        found += _refused(f"service {action.service.name} recovery[{i}]", action, _action_settings_check(action))
    for tunnel in Tunnel.objects.order_by("name"):
        found += _refused(f"tunnel {tunnel.name}", tunnel)
    for channel in Channel.objects.order_by("name"):
        found += _refused(f"channel {channel.name}", channel, channel.clean)
    for window in MaintenanceWindow.objects.order_by("name"):
        found += _refused(f"maintenance window {window.name}", window, window.clean)
    return found


def _action_settings_check(action: RecoveryAction) -> Callable[[], None]:
    # Its kind's keys only: RecoveryAction.clean's RECOVERY_STALE_AFTER bound is the `recovery` check's.
    def check() -> None:
        if action.kind not in action_registry:
            raise ValidationError({"kind": f"unknown kind {action.kind!r}"})
        try:
            action_registry.get(action.kind).validate_settings(copy.deepcopy(action.settings), "settings")
        except ConfigError as exc:
            raise ValidationError(str(exc)) from None

    return check


def _refused(where: str, row: Model, clean: Callable[[], None] | None = None) -> list[str]:
    """What the field validators (and `clean`) refuse in one row, as `where: field: message` (a field the
    validators refused once is not named again for `clean`'s word on it)."""
    out: list[str] = []
    named: set[str] = set()
    for run in (row.clean_fields, clean):
        if run is None:
            continue
        try:
            run()
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}
            for field, messages in errors.items():
                if field in named:
                    continue
                named.add(field)
                for message in messages:
                    # A kind's key names its own place (`settings.expect_status: …`).
                    label = "" if field == NON_FIELD_ERRORS or message.startswith(f"{field}.") else f"{field}: "
                    out.append(f"{where}: {label}{message}")
    return out


# How many out-of-bounds values doctor names one by one; the rest are counted.
MAX_BOUNDS_SHOWN = 12


def check_bounds() -> Finding:
    found = out_of_bounds()
    if not found:
        return ok("bounds", "every stored value is within its bounds")
    shown, more = first_of(found, MAX_BOUNDS_SHOWN)
    return problem(
        "bounds",
        "stored before the bounds (or by other means), refused today: " + "; ".join(shown) + more,
        "edit it in the admin or re-import the file (`python manage.py importconfig`): both say the bound",
    )


def check_status_hosts() -> Finding:
    """A status page's own `hostname` must be in ALLOWED_HOSTS: Django refuses any other Host with a 400
    before the page is looked up, so the page would never answer there."""
    hosts = StatusPage.objects.exclude(hostname="").order_by("slug").values_list("slug", "hostname")
    refused = [f"{slug} ({host})" for slug, host in hosts if not validate_host(host, settings.ALLOWED_HOSTS)]
    if not refused:
        return ok("status_hosts", "every status page's hostname is in ALLOWED_HOSTS")
    shown, more = first_of(refused, MAX_UNSET_SHOWN)
    return problem(
        "status_hosts",
        "status pages whose hostname Django refuses (not in ALLOWED_HOSTS): " + ", ".join(shown) + more,
        "add each hostname to ALLOWED_HOSTS in the env file and restart the web workers",
    )


Check = Callable[[], Finding]
# (name, function, needs the database)
CHECKS: list[tuple[str, Check, bool]] = [
    ("database", check_database, False),
    ("cache", check_cache, False),
    ("broker", check_broker, False),
    ("scheduler", check_scheduler, True),
    ("logs", check_log_dir, False),
    ("files", check_file_modes, False),
    ("secret_key", check_secret_key, False),
    ("debug", check_debug, False),
    ("schedules", check_schedules, True),
    ("clock", check_clock, True),
    ("variables", check_variables, True),
    ("recovery", check_recovery_bounds, True),
    ("bounds", check_bounds, True),
    ("status_hosts", check_status_hosts, True),
    ("supervisor", check_supervisor, False),
    ("static", check_static, False),
]


def run_checks(checks: list[tuple[str, Check, bool]] | None = None) -> list[Finding]:
    findings: list[Finding] = []
    blocked = ""  # why checks that need a working, migrated database are skipped
    for name, check, needs_db in checks if checks is not None else CHECKS:
        if needs_db and blocked:
            findings.append(Finding(name, True, f"skipped: {blocked}", skipped=True))
            continue
        try:
            finding = check()
        except Exception as exc:  # a check must report, never crash the report
            log.debug("doctor check %s crashed", name, exc_info=True)
            finding = problem(name, f"the check itself failed: {_error(exc)}", "fix the problems above first")
        findings.append(finding)
        if name == "database" and not finding.ok:
            unreachable = "cannot reach" in finding.detail
            blocked = "the database is unreachable" if unreachable else "the database is not migrated"
    return findings
