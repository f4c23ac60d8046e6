"""The keys of the health tables of the config file, and the bounds their model columns share.

health.models builds its fields' validators from these Keys and configfile.config validates the TOML
with them, so the admin and the file refuse the same values with the same message.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q

from core.spec import ConfigError, Key
from health.windows import MAX_DURATION_MINUTES

# Reminders at most once a minute, at least once in 30 days (0: off).
REMIND_EVERY = Key("int", default=0, minimum=0, maximum=30 * 86400)

SERVICE_KEYS: dict[str, Key] = {
    "name": Key("slug", required=True),
    "kind": Key("str", required=True),
    "description": Key("text", default=""),
    "interval": Key("int", default=60, minimum=1, maximum=86400),
    "timeout": Key("number", default=5, minimum=0.1, maximum=3600),
    "critical": Key("bool", default=True),
    "failure_threshold": Key("int", default=2, minimum=1, maximum=1000),
    "degraded_latency_ms": Key("int", default=2000, minimum=0, maximum=3_600_000, help="0 turns it off"),
    "enabled": Key("bool", default=True),
    "depends_on": Key("list[str]", default=[]),
    # Labels the services list filters on (?tag=) and the API shows; each one a TAG (check_tags).
    "tags": Key("list[str]", default=[], help="labels to filter on, e.g. db, eu-west"),
    "remind_every": REMIND_EVERY,
    # A state badge at /badge/<name>.svg even when no public status page lists the service.
    "badge": Key("bool", default=False),
    # A `push` service's ping address: made on creation; given, it is kept (moving a portal keeps cron lines).
    "ping_uuid": Key("uuid", help="push only; default: a new one"),
    # Evidence kept before a restart (recovery.evidence): the tail of these files, bounded in lines and time.
    "evidence_log": Key("list[str]", default=[]),
    "evidence_lines": Key("int", default=100, minimum=1, maximum=10_000),
    "evidence_timeout": Key("number", default=2, minimum=0.1, maximum=60),
}

# A tag is matched exactly in ?tag= and read in URLs, so it is a short slug-ish word ("team.db", "env:prod").
TAG = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,49}")
TAG_RULE = "must be a tag: lowercase letters, digits, '-', '_', '.' or ':', at most 50 characters"
MAX_TAGS = 20


def check_tags(tags: Any, where: str) -> list[str]:
    """Refuse a tags value that is not a list of distinct TAGs (at most MAX_TAGS), naming the bad item."""
    if not isinstance(tags, list):
        raise ConfigError(where, "must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise ConfigError(where, f"must have at most {MAX_TAGS} tags")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            raise ConfigError(f"{where}[{i}]", TAG_RULE)
        if tag in tags[:i]:
            raise ConfigError(f"{where}[{i}]", f"duplicate tag {tag!r}")
    return tags


def validate_tags(value: Any) -> None:
    """Service.tags' validator: the admin refuses what importconfig refuses, with the same message."""
    try:
        check_tags(value, "tags")
    except ConfigError as exc:
        raise ValidationError(str(exc), code="tags") from None


def has_tag(tag: str) -> Q:
    """Services whose tags include `tag` (a TAG), on SQLite and PostgreSQL alike: JSON `contains` is
    PostgreSQL-only, but a TAG holds no quote, so `"tag"` in the stored JSON text is exactly one item."""
    return Q(tags__icontains=f'"{tag}"')


# The states of an incident update, in the order an incident usually goes through them (Statuspage's words).
UPDATE_STATUSES = ("investigating", "identified", "monitoring", "resolved")

MAINTENANCE_KEYS: dict[str, Key] = {
    "name": Key("slug", required=True),
    "service": Key("str"),
    "cron": Key("str"),
    "weekdays": Key("list[int]"),  # 0 (Monday) … 6 (Sunday), checked by health.windows.validate_window
    "duration": Key("int", default=60, minimum=1, maximum=MAX_DURATION_MINUTES),
    "timezone": Key("str", default="UTC"),
    "enabled": Key("bool", default=True),
    "reason": Key("text", default=""),
}
