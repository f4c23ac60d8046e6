from tests.core.conftest import db_log, fast_db_hardening  # noqa: F401  (the database-hardening fixtures)
