"""A push service's ping uuid in the config file: exported, kept across imports, given to move a portal."""

from __future__ import annotations

import uuid

import pytest

from configfile.config import export_text, import_text, load_toml
from core.spec import ConfigError
from health.models import Service

PUSH = '[[service]]\nname = "backup"\nkind = "push"\nperiod = 3600\n'
GIVEN = "5b3e1c52-7f0e-4c1a-9a34-2f7f6b1d9e10"


@pytest.mark.django_db
def test_it_exports_the_uuid_and_keeps_it_across_a_reimport_without_it():
    import_text(PUSH)
    made = Service.objects.get(name="backup").ping_uuid
    exported = load_toml(export_text())["service"][0]
    assert exported["ping_uuid"] == str(made)
    import_text(PUSH + "grace = 120\n")  # the file names no uuid: the row keeps its own
    assert Service.objects.get(name="backup").ping_uuid == made
    import_text(export_text())
    assert Service.objects.get(name="backup").ping_uuid == made


@pytest.mark.django_db
def test_it_takes_a_given_uuid_so_a_moved_portal_keeps_its_cron_lines():
    import_text(PUSH + f'ping_uuid = "{GIVEN.upper()}"\n')
    assert Service.objects.get(name="backup").ping_uuid == uuid.UUID(GIVEN)


@pytest.mark.django_db
def test_it_exports_no_uuid_for_other_kinds():
    import_text('[[service]]\nname = "web"\nkind = "tcp"\nhost = "127.0.0.1"\nport = 1\n')
    assert "ping_uuid" not in load_toml(export_text())["service"][0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('ping_uuid = "not-a-uuid"\n', r"service\[0\].ping_uuid: must be a UUID"),
        ("ping_uuid = 5\n", r"service\[0\].ping_uuid: must be a UUID"),
        (f'[[service]]\nname = "other"\nkind = "push"\nperiod = 60\nping_uuid = "{GIVEN}"\n', "two services"),
    ],
)
def test_it_refuses_a_bad_uuid_and_changes_nothing(extra: str, message: str):
    with pytest.raises(ConfigError, match=message):
        import_text(PUSH + f'ping_uuid = "{GIVEN}"\n' * ("two" in message) + extra)
    assert not Service.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_uuid_on_another_kind_and_one_another_service_holds():
    with pytest.raises(ConfigError, match="service\\[0\\].ping_uuid: only a push service"):
        import_text(f'[[service]]\nname = "web"\nkind = "tcp"\nhost = "127.0.0.1"\nport = 1\nping_uuid = "{GIVEN}"\n')
    import_text(PUSH.replace("backup", "first") + f'ping_uuid = "{GIVEN}"\n')
    with pytest.raises(ConfigError, match="already the ping uuid of service 'first'"):
        import_text(PUSH + f'ping_uuid = "{GIVEN}"\n')
    assert list(Service.objects.values_list("name", flat=True)) == ["first"]
