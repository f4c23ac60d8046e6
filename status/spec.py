"""The keys of the `[[status_page]]` table of the config file; status.models builds its validators from them."""

from __future__ import annotations

from core.spec import Key

STATUS_PAGE_KEYS: dict[str, Key] = {
    "slug": Key("slug", required=True, help="the page's address: /status/<slug>/"),
    "title": Key("str", required=True),
    "description": Key("text", default=""),
    "services": Key("list[str]", default=[], help="service names, in the order shown"),
    "display_names": Key("dict[str]", default={}, help="{service = 'Shown name'}; default the service's name"),
    "hostname": Key("text", default="", help="a custom domain: / on this Host header shows the page"),
    "show_details": Key("bool", default=False, help="show probe details and incident causes (internal!)"),
    "public": Key("bool", default=True, help="false: only logged-in users see it"),
}
# A hostname as a Host header carries it (lowercase, no port); checked by the import and the admin alike.
HOSTNAME_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
