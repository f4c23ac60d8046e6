from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection, connections

from recovery.engine import recover_services
from recovery.models import RecoveryAttempt
from tests.conftest import requires_postgres
from tests.recovery.conftest import PY

THREADS = 20


def _fire(names: list[str], force: bool, barrier: threading.Barrier, out: list, errors: list) -> None:
    try:
        barrier.wait(timeout=30)
        out.extend(recover_services(names, trigger="api", via="thread", force=force))
    except Exception as exc:  # reported by the test, never swallowed
        errors.append(exc)
    finally:
        connections.close_all()  # each thread had its own connection


def _run_concurrently(names: list[str], *, force: bool = False) -> tuple[list, list]:
    barrier = threading.Barrier(THREADS)
    out: list = []
    errors: list = []
    threads = [threading.Thread(target=_fire, args=(names, force, barrier, out, errors)) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return out, errors


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_runs_exactly_one_of_20_concurrent_requests_and_records_19_skips(
    flag_target, make_service, add_action, tmp_path
):
    server, flag = flag_target
    log = tmp_path / "runs.log"
    svc = make_service(url=server.url)
    # Slow enough that the others arrive while it runs; it also fixes the target.
    script = (
        "import sys, time, pathlib; open(sys.argv[1], 'a').write('ran\\n'); time.sleep(0.5); "
        "pathlib.Path(sys.argv[2]).touch()"
    )
    add_action(svc, "command", {"argv": [PY, "-c", script, str(log), str(flag)]})

    results, errors = _run_concurrently([svc.name])

    assert errors == []
    assert len(log.read_text().splitlines()) == 1  # the action ran once
    outcomes = Counter(r["outcome"] for r in results)
    assert outcomes["succeeded"] == 1
    assert sum(n for o, n in outcomes.items() if o.startswith("skipped_")) == THREADS - 1
    rows = Counter(RecoveryAttempt.objects.values_list("outcome", flat=True))
    assert rows["succeeded"] == 1 and sum(rows.values()) == THREADS
    assert set(rows) <= {"succeeded", "skipped_busy", "skipped_cooldown"}


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_lock_even_for_forced_concurrent_requests(flag_target, make_service, add_action, tmp_path):
    server, flag = flag_target
    log = tmp_path / "runs.log"
    svc = make_service(url=server.url)
    script = "import sys, time; open(sys.argv[1], 'a').write('ran\\n'); time.sleep(1.0)"
    add_action(svc, "command", {"argv": [PY, "-c", script, str(log)]})
    out, errors = _run_concurrently([svc.name], force=True)

    assert errors == []
    ran = len(log.read_text().splitlines())
    # Force bypasses the cooldown, so a late request may run after the first finished; never two at once.
    assert ran == sum(1 for r in out if not r["skipped"])
    assert ran < THREADS and Counter(r["outcome"] for r in out)["skipped_busy"] >= 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_it_holds_across_processes(flag_target, make_service, add_action, tmp_path):
    server, flag = flag_target
    log = tmp_path / "runs.log"
    svc = make_service(url=server.url)
    # Long enough for all four processes (each starting Django) to meet it running.
    script = "import sys, time; open(sys.argv[1], 'a').write('ran\\n'); time.sleep(2)"
    add_action(svc, "command", {"argv": [PY, "-c", script, str(log)]})
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url}
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "recover", svc.name],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]

    assert len(log.read_text().splitlines()) == 1, outputs
    rows = Counter(RecoveryAttempt.objects.values_list("outcome", flat=True))
    assert sum(rows.values()) == 4 and rows["failed"] == 1, rows
    assert sum(n for o, n in rows.items() if o.startswith("skipped_")) == 3
