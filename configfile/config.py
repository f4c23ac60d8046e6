"""The TOML config file: validate everything first, then upsert by name in one transaction.

A file with any error changes nothing; errors name the table index and key, e.g.
`service[3].interval: must be a positive integer`.
"""

from __future__ import annotations

import tomllib
import uuid
from dataclasses import dataclass, field
from typing import Any

import tomli_w
from django.db import models, transaction

from configfile import tables as config_tables
from configfile.upsert import Item, upsert
from core.signals import config_imported
from core.spec import MAX_DEPTH, ConfigError, Key, check_depth, env_refs, key_name, validate
from health.models import Service
from health.probes import registry as probe_registry
from health.probes.push import verify_wait
from health.spec import SERVICE_KEYS, check_tags
from recovery.actions import registry as action_registry
from recovery.actions.base import check_stale_bound
from recovery.models import RecoveryAction
from recovery.spec import RECOVERY_KEYS
from tunnels.models import Tunnel
from tunnels.spec import TUNNEL_KEYS, check_tunnel

# Sent after an import changed rows; the scheduler re-creates its schedules on it.

SERVICE_FIELDS = [k for k in SERVICE_KEYS if k not in ("depends_on",)]
TOP_LEVEL = ("service", "tunnel", "channel", "maintenance", "status_page")
# Kinds whose `argv` becomes a child's command line, which every local user can read (`ps`, /proc).
ARGV_KINDS = ("command", "restart_process")


@dataclass
class Plan:
    services: list[dict[str, Any]] = field(default_factory=list)
    tunnels: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)
    maintenance: list[dict[str, Any]] = field(default_factory=list)
    status_pages: list[dict[str, Any]] = field(default_factory=list)
    # Accepted, but worth saying: a ${VAR} that lands in a command line.
    warnings: list[str] = field(default_factory=list)


@dataclass
class Changes:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def summary(self, what: str) -> str:
        return (
            f"{what}: {len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.deleted)} deleted"
        )


@dataclass
class ImportReport:
    services: Changes
    tunnels: Changes
    dry_run: bool
    channels: Changes = field(default_factory=Changes)
    maintenance: Changes = field(default_factory=Changes)
    status_pages: Changes = field(default_factory=Changes)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        kinds = (("service", self.services), ("tunnel", self.tunnels))
        kinds += (("channel", self.channels), ("maintenance window", self.maintenance))
        kinds += (("status page", self.status_pages),)
        for what, changes in kinds:
            for verb in ("created", "updated", "deleted"):
                for name in getattr(changes, verb):
                    out.append(f"{'would be ' if self.dry_run else ''}{verb}: {what} {name}")
        out.append(self.services.summary("services") + "; " + self.tunnels.summary("tunnels"))
        tables = (("channels", self.channels), ("maintenance windows", self.maintenance))
        for what, changes in (*tables, ("status pages", self.status_pages)):
            if changes.created or changes.updated or changes.unchanged or changes.deleted:
                out[-1] += "; " + changes.summary(what)
        return out


def _kind_table(
    table: Any, where: str, base: dict[str, Key], registry: Any, nested: tuple[str, ...] = ()
) -> tuple[dict, dict]:
    """Split a table into its common keys and its kind's keys, validating both."""
    if not isinstance(table, dict):
        raise ConfigError(where, "must be a table")
    kind = table.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{where}.kind", "is required")
    if kind not in registry:
        raise ConfigError(f"{where}.kind", "must be one of " + ", ".join(registry.kinds()))
    kind_cls = registry.get(kind)
    kind_data = {k: v for k, v in table.items() if k not in base and k not in nested}
    common_data = {k: v for k, v in table.items() if k in base}
    common = validate(base, common_data, where)
    kind_settings = kind_cls.validate_settings(kind_data, where)
    return common, kind_settings


def argv_warnings(argv: Any, where: str) -> list[str]:
    """A warning for each ${VAR} in an argv: expanded, it is visible to every local user in `ps`."""
    names = [n for arg in argv if isinstance(arg, str) for n in env_refs(arg)] if isinstance(argv, list) else []
    return [
        f"warning: {where}: ${{{name}}} is passed in argv, which every local user can read (`ps`, "
        f'/proc/PID/cmdline); pass it in `env` instead (e.g. env = {{TUNNEL_TOKEN = "${{{name}}}"}})'
        for name in dict.fromkeys(names)
    ]


def _check_lengths(model: type[models.Model], values: dict[str, Any], where: str) -> None:
    # The database would refuse (PostgreSQL) or silently keep (SQLite) an over-long string: refuse it here.
    for f in model._meta.get_fields():
        if isinstance(f, models.UUIDField):  # its max_length is of the hex form; the Key checked the value
            continue
        limit = getattr(f, "max_length", None)
        value = values.get(f.name)
        if limit and isinstance(value, str) and len(value) > limit:
            raise ConfigError(f"{where}.{f.name}", f"must be at most {limit} characters")


def load_toml(text: str) -> dict[str, Any]:
    """The parsed file, nested at most MAX_DEPTH levels; a named ConfigError for anything else."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError("", f"not valid TOML: nested more than {MAX_DEPTH} levels deep") from None
    check_depth(doc, "", MAX_DEPTH)
    return doc


def parse(text: str, *, prune: bool = False) -> Plan:
    """Parse and validate a whole file; raise ConfigError on the first problem.

    With `prune`, references (depends_on, a recovery's tunnel) must be to things the file names,
    since everything else is about to be deleted.
    """
    doc = load_toml(text)
    for key in doc:
        if key not in TOP_LEVEL:
            expected = "expected [[service]], [[tunnel]], [[channel]], [[maintenance]] or [[status_page]]"
            raise ConfigError(key_name(key), f"unknown table ({expected})")
    plan = Plan()
    services = doc.get("service", [])
    if not isinstance(services, list):
        raise ConfigError("service", "must be an array of tables ([[service]])")
    names: set[str] = set()
    uuids: set[str] = set()
    for i, table in enumerate(services):
        where = f"service[{i}]"
        common, kind_settings = _kind_table(table, where, SERVICE_KEYS, probe_registry, nested=("recovery",))
        _check_lengths(Service, common, where)
        check_tags(common.get("tags", []), f"{where}.tags")
        if common["kind"] in ARGV_KINDS:
            plan.warnings += argv_warnings(kind_settings.get("argv"), f"{where}.argv")
        if common["name"] in names:
            raise ConfigError(f"{where}.name", f"duplicate name {common['name']!r}")
        _check_ping_uuid(common, where, uuids)
        names.add(common["name"])
        actions = []
        recovery = table.get("recovery", [])
        if not isinstance(recovery, list):
            raise ConfigError(f"{where}.recovery", "must be an array of tables ([[service.recovery]])")
        for j, action in enumerate(recovery):
            a_where = f"{where}.recovery[{j}]"
            a_common, a_settings = _kind_table(action, a_where, RECOVERY_KEYS, action_registry)
            check_stale_bound(a_common, a_where, verify_wait(common["kind"], kind_settings))
            if a_common["kind"] == "restart_process" and common["kind"] != "process":
                raise ConfigError(f"{a_where}.kind", "restart_process needs a service of kind process")
            if a_common["kind"] in ARGV_KINDS:
                plan.warnings += argv_warnings(a_settings.get("argv"), f"{a_where}.argv")
            actions.append({**a_common, "settings": a_settings})
        plan.services.append({**common, "settings": kind_settings, "recovery": actions})
    tunnel_names: set[str] = set()
    tunnels = doc.get("tunnel", [])
    if not isinstance(tunnels, list):
        raise ConfigError("tunnel", "must be an array of tables ([[tunnel]])")
    for i, table in enumerate(tunnels):
        cleaned = validate(TUNNEL_KEYS, table, f"tunnel[{i}]")
        check_tunnel(cleaned, f"tunnel[{i}]")
        _check_lengths(Tunnel, cleaned, f"tunnel[{i}]")
        if cleaned["name"] in tunnel_names:
            raise ConfigError(f"tunnel[{i}].name", f"duplicate name {cleaned['name']!r}")
        tunnel_names.add(cleaned["name"])
        plan.warnings += argv_warnings(cleaned["command"], f"tunnel[{i}].command")
        plan.tunnels.append(cleaned)
    for i, svc in enumerate(plan.services):
        for dep in svc.get("depends_on", []):
            if dep not in names and (prune or not Service.objects.filter(name=dep).exists()):
                raise ConfigError(f"service[{i}].depends_on", f"unknown service {dep!r}")
            if dep == svc["name"]:
                raise ConfigError(f"service[{i}].depends_on", "a service cannot depend on itself")
    for i, svc in enumerate(plan.services):
        for j, action in enumerate(svc["recovery"]):
            tunnel = action["settings"].get("tunnel")
            if not tunnel or tunnel in tunnel_names:
                continue
            if prune or not Tunnel.objects.filter(name=tunnel).exists():
                raise ConfigError(f"service[{i}].recovery[{j}].tunnel", f"unknown tunnel {tunnel!r}")
    plan.channels = config_tables.parse_channels(doc.get("channel", []))
    plan.maintenance = config_tables.parse_maintenance(doc.get("maintenance", []))
    config_tables.check_references(plan.channels, plan.maintenance, names, prune=prune)
    plan.status_pages = config_tables.parse_status_pages(doc.get("status_page", []))
    config_tables.check_status_page_references(plan.status_pages, names, prune=prune)
    return plan


def _check_ping_uuid(common: dict[str, Any], where: str, seen: set[str]) -> None:
    """A given ping_uuid: a push service's, once in the file, and no other service's already."""
    wanted = common.get("ping_uuid")
    if wanted is None:
        return
    wanted = wanted.lower()
    if common["kind"] != "push":
        raise ConfigError(f"{where}.ping_uuid", "only a push service has a ping uuid")
    if wanted in seen:
        raise ConfigError(f"{where}.ping_uuid", "the same uuid is given to two services")
    seen.add(wanted)
    other = Service.objects.filter(ping_uuid=wanted).exclude(name=common["name"]).values_list("name", flat=True).first()
    if other is not None:
        raise ConfigError(f"{where}.ping_uuid", f"already the ping uuid of service {other!r}")
    common["ping_uuid"] = wanted


def _service_values(svc: dict[str, Any]) -> dict[str, Any]:
    values = {k: svc.get(k, SERVICE_KEYS[k].default) for k in SERVICE_FIELDS if k not in ("name", "ping_uuid")}
    if svc.get("ping_uuid") is not None:  # absent: a new row gets a new one, an existing row keeps its own
        values["ping_uuid"] = uuid.UUID(svc["ping_uuid"])
    values["timeout"] = float(values["timeout"])
    values["settings"] = svc["settings"]
    return values


def _action_values(action: dict[str, Any], position: int) -> dict[str, Any]:
    values = {k: action.get(k, RECOVERY_KEYS[k].default) for k in RECOVERY_KEYS}
    values["timeout"] = float(values["timeout"])
    values["verify_delay"] = float(values["verify_delay"])
    values["settings"] = action["settings"]
    values["position"] = position
    return values


def _tunnel_values(tunnel: dict[str, Any]) -> dict[str, Any]:
    values = {k: tunnel.get(k, TUNNEL_KEYS[k].default) for k in TUNNEL_KEYS if k != "name"}
    for k in ("process_match", "ready_url", "public_url", "log_file"):
        values[k] = values[k] or ""
    values["startup_timeout"] = float(values["startup_timeout"])
    return values


def _action_rows(service: Service) -> list[dict[str, Any]]:
    return [
        {k: getattr(a, k) for k in (*RECOVERY_KEYS, "settings", "position")}
        for a in service.recovery_actions.order_by("position")
    ]


def apply(plan: Plan, *, prune: bool = False, dry_run: bool = False) -> ImportReport:
    """Upsert everything in the plan by name, in one transaction (rolled back for a dry run)."""
    report = ImportReport(Changes(), Changes(), dry_run, warnings=list(plan.warnings))
    try:
        with transaction.atomic():
            _apply(plan, prune, report)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    if not dry_run and (
        report.services.created
        or report.services.updated
        or report.services.deleted
        or report.tunnels.created
        or report.tunnels.updated
        or report.tunnels.deleted
    ):
        config_imported.send(sender=Plan, report=report)
    return report


class _DryRun(Exception):
    pass


def _apply(plan: Plan, prune: bool, report: ImportReport) -> None:
    actions = {svc["name"]: [_action_values(a, i) for i, a in enumerate(svc["recovery"])] for svc in plan.services}

    def services_differ(row: Service) -> bool:
        wanted = next(svc for svc in plan.services if svc["name"] == row.name)
        depends = sorted(d.name for d in row.depends_on.all())
        return _action_rows(row) != actions[row.name] or depends != sorted(wanted.get("depends_on", []))

    by_name, touched = upsert(
        Service,
        [Item(svc["name"], _service_values(svc), services_differ) for svc in plan.services],
        report.services,
        prune=prune,
        existing=Service.objects.prefetch_related("depends_on", "recovery_actions"),
    )
    for name in touched:
        row = by_name[name]
        row.recovery_actions.all().delete()
        RecoveryAction.objects.bulk_create([RecoveryAction(service=row, **a) for a in actions[name]])
    for svc in plan.services:
        deps = [by_name.get(d) or Service.objects.get(name=d) for d in svc.get("depends_on", [])]
        by_name[svc["name"]].depends_on.set(deps)
    upsert(Tunnel, [Item(t["name"], _tunnel_values(t)) for t in plan.tunnels], report.tunnels, prune=prune)
    config_tables.apply_channels(plan.channels, prune, report.channels)
    config_tables.apply_maintenance(plan.maintenance, prune, report.maintenance)
    config_tables.apply_status_pages(plan.status_pages, prune, report.status_pages)


def import_text(text: str, *, prune: bool = False, dry_run: bool = False) -> ImportReport:
    return apply(parse(text, prune=prune), prune=prune, dry_run=dry_run)


def _without_defaults(values: dict[str, Any], spec: dict[str, Key]) -> dict[str, Any]:
    return {
        k: v
        for k, v in values.items()
        if v is not None and v != "" and not (k in spec and spec[k].default == v and not spec[k].required)
    }


def export_text() -> str:
    """Everything as TOML; importing it again yields the same rows."""
    services = []
    for s in Service.objects.prefetch_related("depends_on", "recovery_actions").order_by("name"):
        table: dict[str, Any] = {"name": s.name, "kind": s.kind}
        table.update(
            _without_defaults(
                {k: getattr(s, k) for k in SERVICE_FIELDS if k not in ("name", "kind", "ping_uuid")}, SERVICE_KEYS
            )
        )
        if s.kind == "push":
            table["ping_uuid"] = str(s.ping_uuid)
        table.update(s.settings)
        deps = sorted(d.name for d in s.depends_on.all())
        if deps:
            table["depends_on"] = deps
        actions = []
        for a in s.recovery_actions.order_by("position"):
            at: dict[str, Any] = {"kind": a.kind}
            at.update(_without_defaults({k: getattr(a, k) for k in RECOVERY_KEYS if k != "kind"}, RECOVERY_KEYS))
            at.update(a.settings)
            actions.append(at)
        if actions:
            table["recovery"] = actions
        services.append(table)
    tunnels = []
    for t in Tunnel.objects.order_by("name"):
        tt: dict[str, Any] = {"name": t.name}
        tt.update(_without_defaults({k: getattr(t, k) for k in TUNNEL_KEYS if k != "name"}, TUNNEL_KEYS))
        tt["command"] = t.command
        tunnels.append(tt)
    doc: dict[str, Any] = {}
    if services:
        doc["service"] = services
    if tunnels:
        doc["tunnel"] = tunnels
    channels, windows = config_tables.export_channels(), config_tables.export_maintenance()
    if channels:
        doc["channel"] = channels
    if windows:
        doc["maintenance"] = windows
    status_pages = config_tables.export_status_pages()
    if status_pages:
        doc["status_page"] = status_pages
    header = "# opsportal configuration, written by `manage.py exportconfig`.\n"
    return header + tomli_w.dumps(doc)
