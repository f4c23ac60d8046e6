"""Signals that let a lower layer announce what an upper one reacts to."""

from django.dispatch import Signal

# Sent by configfile after an import wrote its changes (kwargs: report); dispatch re-checks its schedules.
config_imported = Signal()

# Sent by health after outbox (Event) rows were inserted, by save() or bulk_create() (kwargs: events, using):
# the one place every writer passes through. notify sends them once their transaction commits.
events_written = Signal()
