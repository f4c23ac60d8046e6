"""One config schema: what the README documents is what `importconfig` accepts, and the admin and the file
refuse the same values with the same words (the spec Keys drive the TOML check and the model validators)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from configfile.config import export_text, import_text
from configfile.tables import WHEN_KEYS
from health.models import Service
from health.spec import MAINTENANCE_KEYS, SERVICE_KEYS
from notify.spec import CHANNEL_KEYS
from recovery.actions.base import COMMON_KEYS
from recovery.spec import RECOVERY_KEYS
from status.spec import STATUS_PAGE_KEYS
from tunnels.spec import TUNNEL_KEYS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
TABLES = {
    "[[service]]": SERVICE_KEYS,
    "[[service.recovery]]": {**RECOVERY_KEYS, **COMMON_KEYS},
    "[[tunnel]]": TUNNEL_KEYS,
    "[[channel]]": CHANNEL_KEYS,
    "[[maintenance]]": {**MAINTENANCE_KEYS, **dict.fromkeys(WHEN_KEYS)},
    "[[status_page]]": STATUS_PAGE_KEYS,
}


def documented_keys(table: str) -> list[str]:
    """The first column of the README's `| key | default | meaning |` table under the heading naming `table`."""
    heading = re.search(rf"^### `{re.escape(table)}` keys.*$", README, re.M)
    assert heading, f"README has no key table for {table}"
    rest = README[heading.end() :]
    start = rest.index("| key | default | meaning |")
    keys = []
    for line in rest[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        keys += re.findall(r"`([a-z_]+)`", line.split("|")[1])
    return keys


def documented_bounds() -> list[tuple[str, str, float, float]]:
    rows = re.findall(r"^\| `(\[\[[a-z.]+\]\])` \| `([a-z_]+)` \| ([\d.]+) \| ([\d.]+) \|$", README, re.M)
    return [(table, key, float(low), float(high)) for table, key, low, high in rows]


@pytest.mark.parametrize("table", list(TABLES))
def test_it_accepts_every_key_the_readme_documents_for_a_table(table):
    keys = documented_keys(table)
    assert keys, table
    unknown = [k for k in keys if k not in TABLES[table]]
    assert not unknown, f"{table}: the README documents {unknown}, which the import would refuse"


def test_the_readme_bounds_are_the_schema_bounds():
    rows = documented_bounds()
    assert len(rows) >= 15
    for table, key, low, high in rows:
        spec = TABLES[table][key]
        assert (spec.minimum, spec.maximum) == (low, high), (table, key)


@pytest.mark.django_db
def test_it_imports_remind_every_for_a_service_and_exports_it_again():
    import_text("[[service]]\nname = 'web'\nkind = 'database'\nremind_every = 900\n")
    assert Service.objects.get(name="web").remind_every == 900
    assert "remind_every = 900" in export_text()


@pytest.mark.django_db
def test_it_refuses_an_interval_of_90000_in_the_model_and_the_import_with_the_same_message(tmp_path):
    service = Service(name="web", kind="database", settings={}, interval=90000)
    with pytest.raises(ValidationError) as model_error:
        service.full_clean()
    message = model_error.value.message_dict["interval"][0]
    assert message == "must be at most 86400"

    path = tmp_path / "config.toml"
    path.write_text("[[service]]\nname = 'web'\nkind = 'database'\ninterval = 90000\n")
    with pytest.raises(CommandError) as import_error:
        call_command("importconfig", str(path))
    assert f"service[0].interval: {message} (nothing was changed)" in str(import_error.value)
    assert not Service.objects.exists()
