"""Set up Django for a benchmark on a throwaway database (SQLite file, or DATABASE_URL)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup(label: str) -> str:
    """Point Django at a fresh database and migrate it; returns a description of the database."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
    if not os.environ.get("DATABASE_URL"):
        tmp = tempfile.mkdtemp(prefix=f"opsportal-bench-{label}-")
        os.environ["OPSPORTAL_VAR_DIR"] = tmp
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection

    return f"{connection.vendor} ({os.environ['DATABASE_URL'].split('@')[-1]})"


def teardown() -> None:
    """Remove the throwaway SQLite directory setup() made (a DATABASE_URL given from outside is left alone)."""
    import shutil

    tmp = os.environ.get("OPSPORTAL_VAR_DIR", "")
    if Path(tmp).name.startswith("opsportal-bench-"):
        from django.db import connections

        connections.close_all()
        shutil.rmtree(tmp, ignore_errors=True)
