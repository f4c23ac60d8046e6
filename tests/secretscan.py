"""A scanner for secrets in everything the portal writes or answers, and a pytest plugin that runs it.

`forms(secret)` is every shape a message can carry a secret in (raw, stripped, repr- and JSON-escaped,
the URL encodings of urllib and requests, base64 standard and URL-safe at any offset in a longer
encoded text). It is written here on its own, not taken from `core.spec.scrub`, so that a form the
scrubber forgets is still found.

As a plugin (`-p tests.secretscan`), it sets a canary secret in the environment
(`OPSPORTAL_TEST_CANARY`, a fresh random value per run unless already set) before any test runs, so
every process a test starts inherits it, and at the end of the session it scans every log file under
LOG_DIR for every form of it; a hit fails the run and names the file and line. With
`OPSPORTAL_SECRETSCAN_DB=1` it also scans every text column of every database row at the end of each
test that used the database (slow: every table, every test).
"""

from __future__ import annotations

import base64
import json
import os
import secrets as _random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from django.apps import apps
from django.db import DatabaseError, connections, models
from requests.utils import requote_uri

CANARY_ENV = "OPSPORTAL_TEST_CANARY"
DB_SCAN_ENV = "OPSPORTAL_SECRETSCAN_DB"
MIN_FORM = 4


def _base64(data: bytes) -> set[str]:
    out: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\xff" * offset + data).decode().rstrip("=")
        # Drop the characters shared with the bytes around the secret; what is left only the secret decides.
        encoded = encoded[(0, 2, 3)[offset] :]
        if (offset + len(data)) % 3:
            encoded = encoded[:-1]
        out.add(encoded)
    out |= {f.replace("+", "-").replace("/", "_") for f in out}
    return out


def forms(secret: str) -> set[str]:
    """Every form of the secret worth looking for (case matters except in %XX escapes: see `found_in`)."""
    found: set[str] = set()
    for value in {secret, secret.strip()}:
        if not value:
            continue
        found |= {
            value,
            repr(value)[1:-1],
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
            quote(value, safe=""),
            quote(value),
            quote_plus(value),
            requote_uri(value),
        }
        found |= _base64(value.encode())
    return {f for f in found if len(f) >= MIN_FORM}


def found_in(text: str, secrets: Iterable[str]) -> list[str]:
    """The forms of the secrets that occur in text ([] when it is clean)."""
    lowered = text.lower()
    hits = []
    for secret in secrets:
        for form in sorted(forms(secret)):
            # An escape's hex may be written in either case (urllib3 upper-cases it).
            if form in text or ("%" in form and form.lower() in lowered):
                hits.append(form)
    return hits


def scan_logs(log_dir: str | os.PathLike[str], secrets: Iterable[str]) -> list[str]:
    """`file:line: form` for every log line under log_dir that carries a form of a secret."""
    wanted = list(secrets)
    findings = []
    for path in sorted(Path(log_dir).rglob("*")):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for form in found_in(line, wanted):
                findings.append(f"{path}:{number}: {form!r}")
    return findings


def _text_rows(using: str) -> Iterator[tuple[str, Any, str]]:
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy or not model._meta.managed:  # a proxy's rows are its concrete model's
            continue
        names = [
            f.column
            for f in model._meta.concrete_fields
            if isinstance(f, (models.CharField, models.TextField, models.JSONField, models.BinaryField))
        ]
        if not names:
            continue
        table = model._meta.db_table
        ops = connections[using].ops
        # Raw column values: a JSONField's text as stored, a session's encoded data as stored.
        with connections[using].cursor() as cursor:
            try:
                cursor.execute(f"SELECT {', '.join(ops.quote_name(n) for n in names)} FROM {ops.quote_name(table)}")
            except DatabaseError:  # a table its migrations did not create in this run
                continue
            for row in cursor.fetchall():
                for column, value in zip(names, row, strict=True):
                    if value is None:
                        continue
                    if isinstance(value, (bytes, memoryview)):
                        value = bytes(value).decode("utf-8", errors="replace")
                    yield table, column, str(value)


def scan_database(secrets: Iterable[str], using: str = "default") -> list[str]:
    """`table.column: form` for every text column of every row that carries a form of a secret."""
    wanted = list(secrets)
    findings = []
    for table, column, text in _text_rows(using):
        for form in found_in(text, wanted):
            findings.append(f"{table}.{column}: {form!r}")
    return findings


def canary() -> str:
    return os.environ[CANARY_ENV]


# -- the plugin
_db_findings: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # A value no test writes on purpose: any form of it in a log or a row is a leak.
    os.environ.setdefault(CANARY_ENV, "canary-" + _random.token_urlsafe(18))


@pytest.fixture(autouse=True)
def _secretscan_rows(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("django_db")
    uses_db = marker is not None or {"db", "transactional_db"} & set(request.fixturenames)
    if os.environ.get(DB_SCAN_ENV) != "1" or not uses_db:
        yield
        return
    transactional = bool(marker and (marker.kwargs.get("transaction") or marker.args[:1] == (True,)))
    # Requested from here, the database is torn down after this fixture's scan below.
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    _db_findings.extend(f"{request.node.nodeid}: {f}" for f in scan_database([canary()]))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    log_dir = os.environ.get("LOG_DIR")
    findings = list(_db_findings)
    if log_dir and Path(log_dir).is_dir():
        findings += scan_logs(log_dir, [canary()])
    if not findings:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("=", f"secretscan: ${CANARY_ENV} leaked into {len(findings)} place(s)", red=True)
        for finding in findings[:50]:
            reporter.write_line(finding)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
