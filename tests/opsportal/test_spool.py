"""The outage spool: durable JSON lines, bounded, replayed in order exactly once (real outages, no mocks)."""

from __future__ import annotations

import json

import pytest
from django.db import IntegrityError

from health.models import Event, ProbeResult, Service, SpoolBatch
from health.runner import run_round
from opsportal import db
from opsportal.spool import Spool, create_or_spool, default_spool, replay_pending, update_or_spool
from tests.opsportal.outage_support import unwritable

pytestmark = pytest.mark.usefixtures("fast_db_hardening")


def test_it_appends_durable_json_lines_in_order(tmp_path):
    spool = Spool(tmp_path)
    for n in range(3):
        assert spool.append("create", {"model": "health.Event", "fields": {"n": n}})
    lines = [json.loads(line) for line in (tmp_path / "spool.jsonl").read_text().splitlines()]
    assert [line["payload"]["fields"]["n"] for line in lines] == [0, 1, 2]
    assert {line["kind"] for line in lines} == {"create"}
    assert spool.pending()


def test_it_drops_records_past_its_size_bound_with_one_clear_log_line(tmp_path, db_log):
    spool = Spool(tmp_path, max_bytes=1024)
    kept = [spool.append("create", {"model": "health.Event", "fields": {"title": "x" * 100}}) for _ in range(20)]
    line_bytes = len((tmp_path / "spool.jsonl").read_text().splitlines()[0]) + 1
    assert kept == [True] * (1024 // line_bytes) + [False] * (20 - 1024 // line_bytes)
    assert spool.size() <= 1024
    full = [r.getMessage() for r in db_log.records if "Spool full" in r.getMessage()]
    assert len(full) == 1
    assert full[0].startswith("[spool] Spool full (")


@pytest.mark.django_db(transaction=True)
def test_it_replays_exactly_once_even_after_a_crash_between_commit_and_unlink(tmp_path):
    spool = Spool(tmp_path)
    for n in range(3):
        spool.append("create", {"model": "health.Event", "fields": {"kind": "test", "title": f"t{n}"}})
    assert spool.replay() == 3
    assert spool.replay() == 0
    assert list(Event.objects.order_by("pk").values_list("title", flat=True)) == ["t0", "t1", "t2"]
    # A batch whose transaction committed but whose file survived (the process died before unlink).
    spool.append("create", {"model": "health.Event", "fields": {"kind": "test", "title": "again"}})
    spool._cut_batch()
    (batch,) = spool.batches()
    SpoolBatch.objects.create(batch_id=batch.stem, records=1)
    assert spool.replay() == 0
    assert not spool.pending()
    assert Event.objects.filter(title="again").count() == 0


@pytest.mark.django_db(transaction=True)
def test_it_sets_aside_a_batch_the_database_refuses_for_good(tmp_path, db_log):
    spool = Spool(tmp_path)
    spool.append("create", {"model": "health.ProbeResult", "fields": {"service_id": 999999, "status": "up"}})
    spool.append("create", {"model": "health.Event", "fields": {"kind": "test", "title": "later"}})
    spool._cut_batch()
    spool.append("create", {"model": "health.Event", "fields": {"kind": "test", "title": "next batch"}})
    spool.replay()
    assert list(tmp_path.glob("failed-batch-*.jsonl"))
    assert list(Event.objects.values_list("title", flat=True)) == ["next batch"]  # not blocked by the bad one
    assert any("cannot be replayed" in r.getMessage() for r in db_log.records)


@pytest.mark.django_db(transaction=True)
def test_it_loses_no_probe_result_while_the_database_is_unwritable(tcp_server, db_log):
    web = Service.objects.create(name="web", kind="tcp", settings={"host": "127.0.0.1", "port": tcp_server.port})
    api = Service.objects.create(name="api", kind="tcp", settings={"host": "127.0.0.1", "port": tcp_server.port})
    services = [web, api]
    stamps = []
    with unwritable():
        for _ in range(3):
            result = run_round(services, recover=False)
            assert result.status == "healthy"  # the round still answers from memory
            stamps.append(result.services[0].last_checked_at)
        assert default_spool().pending()
    db.reset_breaker()
    run_round(services, recover=False)  # the spool is replayed first, then this round is written
    for service in services:
        times = list(ProbeResult.objects.filter(service=service).order_by("pk").values_list("checked_at", flat=True))
        assert len(times) == 4  # every result arrived, once
        assert times == sorted(times)  # in order
        assert times[:3] == stamps
        service.refresh_from_db()
        assert service.consecutive_successes == 4  # the state machine saw each result once
    assert not default_spool().pending()
    assert sum(SpoolBatch.objects.values_list("records", flat=True)) == 3
    messages = [r.getMessage() for r in db_log.records]
    assert any("probe round of 2 services spooled" in m for m in messages)
    assert any(m.startswith("[spool] Replayed ") for m in messages)


@pytest.mark.django_db(transaction=True)
def test_it_spools_a_row_any_app_writes_during_an_outage():
    with unwritable():
        assert create_or_spool("health.Event", kind="test", title="during the outage") is None
    db.reset_breaker()
    row = create_or_spool("health.Event", kind="test", title="after it")
    assert row is not None
    assert list(Event.objects.exclude(title="lock holder").order_by("pk").values_list("title", flat=True)) == [
        "during the outage",
        "after it",
    ]


@pytest.mark.django_db(transaction=True)
def test_it_replays_spooled_updates_in_order_exactly_once():
    row = Event.objects.create(kind="test", title="before", body="first")
    with unwritable():
        assert update_or_spool("health.Event", row.pk, {"title": "one"}) is None
        assert create_or_spool("health.Event", kind="test", title="between") is None
        assert update_or_spool("health.Event", row.pk, {"title": "two", "body": "second"}) is None
        # Conditional: applies only while the row still holds what the writer saw (like a claim token).
        assert update_or_spool("health.Event", row.pk, {"body": "stale"}, where={"title": "one"}) is None
        assert update_or_spool("health.Event", row.pk, {"body": "kept"}, where={"title": "two"}) is None
    db.reset_breaker()
    assert replay_pending() == 5
    row.refresh_from_db()
    assert (row.title, row.body) == ("two", "kept")  # the later update wins: applied in order
    assert Event.objects.filter(title="between").count() == 1
    assert replay_pending() == 0
    assert sum(SpoolBatch.objects.values_list("records", flat=True)) == 5  # each record once
    # With the database up the update is written at once and says how many rows it changed.
    assert update_or_spool("health.Event", row.pk, {"title": "three"}) == 1
    assert Event.objects.get(pk=row.pk).title == "three"


@pytest.mark.django_db(transaction=True)
def test_it_raises_a_row_the_database_refuses_instead_of_spooling_it():
    with pytest.raises(IntegrityError):
        create_or_spool("health.ProbeResult", service_id=999999, status="up")
    assert not default_spool().pending()  # a bad record would otherwise set a whole batch aside
