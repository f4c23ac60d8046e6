#!/usr/bin/env python
"""Django's command-line utility for opsportal."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsportal.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad or missing setting is the operator's to fix: one line naming it, not a traceback.
        sys.stderr.write(f"opsportal: configuration error: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
