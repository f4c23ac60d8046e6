"""The `[[status_page]]` table: imported, validated (a bad key names itself and imports nothing), exported and
round-tripped through the real `importconfig` / `exportconfig` commands."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from configfile.config import export_text, import_text
from health.models import Service
from status.models import StatusPage

pytestmark = pytest.mark.django_db

SERVICES = """
[[service]]
name = "backend"
kind = "tcp"
host = "127.0.0.1"
port = 9

[[service]]
name = "web"
kind = "tcp"
host = "127.0.0.1"
port = 10
"""
PAGES = """
[[status_page]]
slug = "public"
title = "Example status"
description = "What our customers use"
services = ["web", "backend"]
display_names = {backend = "API"}
hostname = "status.example.com"

[[status_page]]
slug = "internal"
title = "Internal"
services = ["backend"]
show_details = true
public = false
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def pages() -> list[tuple]:
    return [
        (
            p.slug,
            p.title,
            p.description,
            p.hostname,
            p.show_details,
            p.public,
            [(e.service.name, e.display_name, e.position) for e in p.entries.select_related("service")],
        )
        for p in StatusPage.objects.order_by("slug")
    ]


def test_it_imports_status_pages_with_their_services_in_order(tmp_path, capsys):
    call_command("importconfig", write(tmp_path, SERVICES + PAGES))
    assert "created: status page public" in capsys.readouterr().out
    assert pages() == [
        ("internal", "Internal", "", "", True, False, [("backend", "", 0)]),
        (
            "public",
            "Example status",
            "What our customers use",
            "status.example.com",
            False,
            True,
            [("web", "", 0), ("backend", "API", 1)],
        ),
    ]


def test_it_round_trips_export_to_import_to_identical_pages(tmp_path, capsys):
    call_command("importconfig", write(tmp_path, SERVICES + PAGES))
    before = pages()
    capsys.readouterr()
    call_command("exportconfig")
    exported = capsys.readouterr().out
    assert "[[status_page]]" in exported and '[status_page.display_names]\nbackend = "API"' in exported
    assert "show_details = false" not in exported  # defaults are left out

    StatusPage.objects.all().delete()
    call_command("importconfig", write(tmp_path, exported))
    assert pages() == before
    assert export_text() == exported.rstrip("\n") + "\n"
    report = import_text(exported)
    assert sorted(report.status_pages.unchanged) == ["internal", "public"]
    assert not report.status_pages.updated and not report.status_pages.created


def test_it_updates_a_pages_services_and_prunes_a_page_the_file_no_longer_names(tmp_path):
    import_text(SERVICES + PAGES)
    changed = PAGES.replace('services = ["web", "backend"]', 'services = ["backend"]').split(
        '[[status_page]]\nslug = "internal"'
    )[0]
    report = import_text(SERVICES + changed, prune=True)
    assert report.status_pages.updated == ["public"] and report.status_pages.deleted == ["internal"]
    assert [e.service.name for e in StatusPage.objects.get(slug="public").entries.all()] == ["backend"]
    assert StatusPage.objects.count() == 1


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('slug = "p"\ntitle = "P"\ncolour = "red"', "status_page[0].colour: unknown key"),
        ('title = "P"', "status_page[0].slug: is required"),
        ('slug = "Not A Slug"\ntitle = "P"', "status_page[0].slug: must be a slug"),
        ('slug = "p"\ntitle = "P"\nservices = ["nope"]', "status_page[0].services: unknown service 'nope'"),
        ('slug = "p"\ntitle = "P"\nservices = ["web", "web"]', "status_page[0].services: names a service twice"),
        (
            'slug = "p"\ntitle = "P"\nservices = ["web"]\ndisplay_names = {backend = "API"}',
            "status_page[0].display_names: 'backend' is not in this page's services",
        ),
        (
            'slug = "p"\ntitle = "P"\nhostname = "status.example.com:8443"',
            "status_page[0].hostname: must be a host name",
        ),
        ('slug = "p"\ntitle = "P"\nshow_details = "yes"', "status_page[0].show_details: must be true or false"),
        ('slug = "p"\ntitle = "P"\npublic = 1', "status_page[0].public: must be true or false"),
    ],
)
def test_it_names_the_bad_key_and_imports_nothing(tmp_path, table, message):
    text = SERVICES + PAGES + "\n[[status_page]]\n" + table + "\n"
    # The bad page is the third: its index in the message is 2.
    message = message.replace("status_page[0]", "status_page[2]")
    with pytest.raises(CommandError) as error:
        call_command("importconfig", write(tmp_path, text))
    assert message in str(error.value) and "(nothing was changed)" in str(error.value)
    assert not StatusPage.objects.exists() and not Service.objects.exists()


def test_it_refuses_two_pages_with_one_slug_or_one_hostname(tmp_path):
    twice = SERVICES + PAGES + '\n[[status_page]]\nslug = "public"\ntitle = "Again"\n'
    with pytest.raises(CommandError, match=r"status_page\[2\]\.slug: duplicate slug 'public'"):
        call_command("importconfig", write(tmp_path, twice))
    same_host = SERVICES + PAGES + '\n[[status_page]]\nslug = "other"\ntitle = "O"\nhostname = "status.example.com"\n'
    with pytest.raises(CommandError, match=r"status_page\[2\]\.hostname: duplicate hostname"):
        call_command("importconfig", write(tmp_path, same_host))
    assert not StatusPage.objects.exists()


def test_it_accepts_a_service_already_in_the_database_unless_pruning(tmp_path):
    import_text(SERVICES)
    page = '[[status_page]]\nslug = "p"\ntitle = "P"\nservices = ["web"]\n'
    import_text(page)
    assert [e.service.name for e in StatusPage.objects.get().entries.all()] == ["web"]
    with pytest.raises(CommandError, match=r"status_page\[0\]\.services: unknown service 'web'"):
        call_command("importconfig", write(tmp_path, page), "--prune")
