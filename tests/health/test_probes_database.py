"""The `database` probe: `SELECT 1` on the portal's own database (SQLite or PostgreSQL, as configured)."""

from __future__ import annotations

import copy

import pytest
from django.db import connection
from django.db.utils import load_backend

from health.probes import database as database_probe
from health.probes.base import DOWN, UP, ProbeConfigError
from health.probes.database import DatabaseProbe
from health.runner import probe_once, run_probes
from tests.health.factories import ServiceFactory
from tests.servers import free_port

pytestmark = pytest.mark.django_db


def broken_connection():
    """A real connection of the configured backend that points where no database is."""
    cfg = copy.deepcopy(connection.settings_dict)
    if connection.vendor == "sqlite":
        cfg["NAME"] = "/nonexistent-dir/opsportal.sqlite3"
    else:
        cfg["HOST"], cfg["PORT"] = "127.0.0.1", free_port()
        cfg["OPTIONS"] = {**cfg.get("OPTIONS", {}), "connect_timeout": 2}
    return load_backend(cfg["ENGINE"]).DatabaseWrapper(cfg, alias="broken")


def test_it_is_up_when_the_portal_database_answers():
    outcome = probe_once(ServiceFactory.build(kind="database", settings={}))
    assert outcome.status == UP
    assert outcome.detail == f"{connection.vendor} answered SELECT 1"


def test_it_is_up_from_a_worker_thread_of_a_round(transactional_db):
    service = ServiceFactory.build(name="portal-db", kind="database", settings={})
    assert run_probes([service])["portal-db"].status == UP


def test_it_is_down_when_the_database_cannot_be_reached(monkeypatch):
    broken = broken_connection()
    monkeypatch.setattr(database_probe, "connection", broken)
    try:
        outcome = probe_once(ServiceFactory.build(kind="database", settings={}))
    finally:
        broken.close()
    assert outcome.status == DOWN
    assert outcome.detail.startswith("database error: OperationalError: ")


def test_it_rejects_settings_naming_the_key():
    with pytest.raises(ProbeConfigError, match=r"settings\.query: unknown key"):
        DatabaseProbe({"query": "SELECT 2"}, timeout=1)
    outcome = probe_once(ServiceFactory.build(kind="database", settings={"query": "SELECT 2"}))
    assert outcome.status == DOWN
    assert outcome.detail == "config error: settings.query: unknown key"
