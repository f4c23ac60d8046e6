"""Issue 14 item 2: a command probe's first line is scrubbed whole before it is cut, so no piece of a secret is left."""

from __future__ import annotations

import sys

import pytest

from health.probes.base import DOWN
from health.runner import probe_once
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db


def test_it_leaves_no_piece_of_a_secret_printed_across_the_cut_of_the_first_line(monkeypatch):
    token = "0123456789abcdef" * 6
    monkeypatch.setenv("OPS_TEST_PLUGIN_TOKEN", token)
    # A check plugin that prints its token late on its first line (past the 300 characters kept), then fails.
    code = "import os; print('x' * 250, os.environ['TOKEN']); raise SystemExit(2)"
    settings = {"argv": [sys.executable, "-c", code], "env": {"TOKEN": "${OPS_TEST_PLUGIN_TOKEN}"}}
    outcome = probe_once(ServiceFactory.build(kind="command", settings=settings, timeout=10))
    assert outcome.status == DOWN and outcome.detail.startswith("exit 2: xxx")
    assert "***" in outcome.detail
    assert [token[i : i + 8] for i in range(len(token) - 7) if token[i : i + 8] in outcome.detail] == []
