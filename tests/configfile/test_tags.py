"""`tags` on services in the config file: imported, exported and imported again unchanged; a bad tag is
refused by name and nothing is imported; the admin refuses what the file refuses."""

from __future__ import annotations

import textwrap
import tomllib

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from configfile.config import export_text, import_text
from health.models import Service

pytestmark = pytest.mark.django_db

TAGGED = """
[[service]]
name = "web"
kind = "tcp"
host = "127.0.0.1"
port = 9
tags = ["edge", "eu-west", "team.web", "env:prod"]

[[service]]
name = "cache"
kind = "tcp"
host = "127.0.0.1"
port = 6379
"""


def test_it_imports_tags_and_defaults_to_none():
    import_text(TAGGED)
    assert Service.objects.get(name="web").tags == ["edge", "eu-west", "team.web", "env:prod"]
    assert Service.objects.get(name="cache").tags == []


def test_it_round_trips_tags_through_export_and_import():
    import_text(TAGGED)
    exported = export_text()
    tables = {t["name"]: t for t in tomllib.loads(exported)["service"]}
    assert tables["web"]["tags"] == ["edge", "eu-west", "team.web", "env:prod"]
    assert "tags" not in tables["cache"]  # the default (no tags) is left out
    Service.objects.all().delete()
    import_text(exported)
    assert Service.objects.get(name="web").tags == ["edge", "eu-west", "team.web", "env:prod"]
    assert export_text() == exported
    report = import_text(exported)
    assert not report.services.created and not report.services.updated


def test_it_updates_changed_tags():
    import_text(TAGGED)
    report = import_text(TAGGED.replace('"edge", ', ""))
    assert report.services.updated
    assert Service.objects.get(name="web").tags == ["eu-west", "team.web", "env:prod"]


@pytest.mark.parametrize(
    ("tags", "where", "message"),
    [
        ('["ok", "Bad Tag"]', "service[1].tags[1]", "must be a tag: lowercase letters, digits"),
        ('["ok", "UPPER"]', "service[1].tags[1]", "must be a tag"),
        (f'["{"x" * 51}"]', "service[1].tags[0]", "at most 50 characters"),
        ('["-leading"]', "service[1].tags[0]", "must be a tag"),
        ('["a\\"b"]', "service[1].tags[0]", "must be a tag"),
        ('["db", "db"]', "service[1].tags[1]", "duplicate tag 'db'"),
        ('"db"', "service[1].tags", "must be a list of non-empty strings"),
        ('[""]', "service[1].tags", "must be a list of non-empty strings"),
        ("[1]", "service[1].tags", "must be a list of non-empty strings"),
        (str([f"t{i}" for i in range(21)]).replace("'", '"'), "service[1].tags", "at most 20 tags"),
    ],
)
def test_it_refuses_a_bad_tag_by_name_and_imports_nothing(tmp_path, tags, where, message):
    text = TAGGED.replace("port = 6379", f"port = 6379\ntags = {tags}")
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(CommandError) as caught:
        call_command("importconfig", str(path))
    assert f"{where}: " in str(caught.value)
    assert message in str(caught.value)
    assert not Service.objects.exists()  # web, before the bad table, is not imported either


def test_it_refuses_a_bad_tag_in_the_admin_with_the_same_rule():
    service = Service(name="web", kind="tcp", settings={"host": "127.0.0.1", "port": 9}, tags=["Bad Tag"])
    with pytest.raises(ValidationError) as caught:
        service.full_clean()
    assert "tags[0]: must be a tag" in str(caught.value.message_dict["tags"])
    service.tags = ["good", "also-good"]
    service.full_clean()


def test_it_shows_searches_and_filters_tags_in_the_admin(admin_client):
    import_text(TAGGED)
    listing = admin_client.get("/admin/health/service/").content.decode()
    assert "edge, eu-west, team.web, env:prod" in listing  # the list's tags column
    assert "?tag=eu-west" in listing  # the filter offers each tag
    filtered = admin_client.get("/admin/health/service/", {"tag": "eu-west"}).content.decode()
    assert "/admin/health/service/" in filtered and ">web</a>" in filtered and ">cache</a>" not in filtered
    searched = admin_client.get("/admin/health/service/", {"q": "team.web"}).content.decode()
    assert ">web</a>" in searched and ">cache</a>" not in searched
