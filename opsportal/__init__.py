"""opsportal: watch services, record every probe, open incidents, repair what it can."""

__version__ = "0.1.0"
