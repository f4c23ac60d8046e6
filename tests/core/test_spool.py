"""The outage spool: durable JSON lines, bounded, replayed in order exactly once (real outages, no mocks)."""

from __future__ import annotations

import json

import pytest
from django.db import IntegrityError

from core import db
from core.models import SpoolBatch
from core.spool import Spool, create_or_spool, default_spool, replay_pending, update_or_spool
from health.models import Event, ProbeResult, Service
from health.runner import run_round
from tests.core.outage_support import unwritable

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
    assert full[0].startswith("[spool] Spool full: create record dropped, spool full (")


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
            result = run_round(services)
            assert result.status == "healthy"  # the round still answers from memory
            stamps.append(result.services[0].last_checked_at)
        assert default_spool().pending()
    db.reset_breaker()
    run_round(services)  # the spool is replayed first, then this round is written
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


# --- a full spool (issue 15 item 2): counted, logged as dropped, shown, raised once per outage ---------------


def system_log_text() -> str:
    """What the system log file (logs/system-monitor.log) holds now: the real handler's file."""
    import logging

    (handler,) = [h for h in logging.getLogger("opsportal.health").handlers if hasattr(h, "baseFilename")]
    handler.flush()
    path = handler.baseFilename
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def test_it_routes_the_spool_logger_to_the_system_log():
    from core.logconfig import build_logging

    config = build_logging(__import__("pathlib").Path("/tmp"))
    assert config["loggers"]["opsportal.spool"]["handlers"] == ["system_file"]


def test_it_counts_drops_across_spool_instances_of_one_host(tmp_path):
    # Two processes of a host are two Spool objects on one directory: the count is the directory's.
    one, other = Spool(tmp_path, max_bytes=1024), Spool(tmp_path, max_bytes=1024)
    big = {"model": "health.Event", "fields": {"title": "x" * 2000}}
    assert not one.append("create", big)
    assert not other.append("create", big)
    assert one.append("create", {"model": "health.Event", "fields": {"title": "fits"}})
    assert one.dropped() == other.dropped() == 2
    assert one.status() == {"bytes": (tmp_path / "spool.jsonl").stat().st_size, "records": 1, "dropped": 2}
    assert one.pending()


@pytest.mark.django_db(transaction=True)
def test_it_counts_logs_shows_and_raises_once_what_a_full_spool_drops(tcp_server, settings, outage, db_log, client):
    from prometheus_client.parser import text_string_to_metric_families

    web = Service.objects.create(name="web", kind="tcp", settings={"host": "127.0.0.1", "port": tcp_server.port})
    api = Service.objects.create(name="api", kind="tcp", settings={"host": "127.0.0.1", "port": tcp_server.port})
    marker = f"durE-{__import__('uuid').uuid4().hex}"
    logging_before = len(system_log_text())
    outage.start()
    run_round([web, api])
    spool = default_spool()
    settings.SPOOL_MAX_BYTES = spool.size() + 100  # a real, tiny bound: the next round does not fit
    for _ in range(2):
        run_round([web, api])
    assert create_or_spool("health.Event", kind="test", title=marker) is None  # dropped too: the spool is full
    status = spool.status()
    assert status["records"] == 1 and status["dropped"] == 3
    assert 0 < status["bytes"] <= settings.SPOOL_MAX_BYTES

    # The API says so while the database is away.
    body = client.get("/health/status").json()
    assert body["database"]["spool"] == status
    text = client.get("/metrics").content.decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["opsportal_spool_dropped_total"] == 3
    assert samples["opsportal_spool_records"] == 1
    assert samples["opsportal_spool_bytes"] == status["bytes"]

    # The log says "dropped" for what was dropped, never "spooled", and the system log file has it.
    messages = [r.getMessage() for r in db_log.records]
    assert sum("probe round of 2 services spooled" in m for m in messages) == 1
    assert sum("probe round of 2 services dropped" in m for m in messages) == 2
    assert sum(m.startswith("[spool] Spool full: probe_round record dropped") for m in messages) == 1
    assert any("health.Event create dropped, not spooled" in m for m in messages)
    assert not any("health.Event create spooled" in m for m in messages)
    written = system_log_text()[logging_before:]
    assert "[spool] Spool full: probe_round record dropped" in written
    assert "dropped in this outage" in written

    # The database back: the spooled round is replayed and the outage's drops become ONE event.
    outage.end()
    run_round([web, api])
    run_round([web, api])
    (event,) = Event.objects.filter(kind="spool_dropped")
    assert event.data["dropped"] == 3
    assert event.data["kinds"] == {"probe_round": 2, "create": 1}
    assert event.subject == "database"
    assert ProbeResult.objects.filter(service=web).count() == 3  # the spooled round and the two after
    assert not spool.pending()
    assert spool.status() == {"bytes": 0, "records": 0, "dropped": 3}  # the count stays: since start
    assert client.get("/health/status").json()["database"]["spool"]["dropped"] == 3

    # A second outage with drops is a second event.
    with unwritable():
        for _ in range(2):
            run_round([web, api])
    db.reset_breaker()
    run_round([web, api])
    assert Event.objects.filter(kind="spool_dropped").count() == 2
    assert spool.dropped() == 4


@pytest.mark.system
def test_it_counts_a_record_the_disk_refuses_as_dropped_and_leaves_no_half_line(tmp_path):
    # A real refusal: the child may write files of at most 600 bytes (RLIMIT_FSIZE; EFBIG past it).
    import os
    import subprocess
    import sys

    script = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
import django
django.setup()
from core.spool import Spool
resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))
spool = Spool(sys.argv[1], max_bytes=10**6)
print([spool.append("create", {"model": "health.Event", "fields": {"title": "x" * 150}}) for _ in range(6)])
print(spool.dropped())
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "opsportal.settings",
        "DEBUG": "true",
        "OPSPORTAL_VAR_DIR": str(tmp_path / "var"),
        "LOG_DIR": str(tmp_path / "logs"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "spool")], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    kept, dropped = (json.loads(line.lower()) for line in proc.stdout.splitlines()[-2:])
    n = kept.count(True)
    assert n >= 1 and kept == [True] * n + [False] * (6 - n)
    assert dropped == 6 - n
    lines = (tmp_path / "spool" / "spool.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])  # whole lines only: no half record
    assert len(lines) - 1 == n
    assert "Spool unwritable: create record dropped, spool not writable (File too large)" in proc.stderr


def test_it_counts_records_right_after_the_spool_is_cut_and_a_new_one_outgrows_it(tmp_path):
    spool = Spool(tmp_path)
    for n in range(3):
        assert spool.append("create", {"model": "health.Event", "fields": {"n": n}})
    assert spool.records() == 3  # caches the size and count of spool.jsonl
    spool._cut_batch()  # spool.jsonl becomes a batch; the next append starts a new file at that path
    for n in range(5):  # larger than the cut file: a cache keyed by path would read only its tail
        assert spool.append("create", {"model": "health.Event", "fields": {"n": n, "pad": "x" * 40}})
    assert spool.records() == 3 + 5
    assert spool.append("create", {"model": "health.Event", "fields": {"n": 9}})
    assert spool.records() == 3 + 6  # and still reads only what was appended since
