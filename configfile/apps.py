from __future__ import annotations

from django.apps import AppConfig


class ConfigfileConfig(AppConfig):
    name = "configfile"
    default_auto_field = "django.db.models.BigAutoField"
