"""Signals that let a lower layer announce what an upper one reacts to."""

from django.dispatch import Signal

# Sent by configfile after an import wrote its changes (kwargs: report); dispatch re-checks its schedules.
config_imported = Signal()
