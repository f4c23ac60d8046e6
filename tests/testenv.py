"""Test-run environment, set before Django reads its settings (loaded with `-p tests.testenv`)."""

import os

# Tests get a throwaway key; real deployments must set SECRET_KEY (see README).
os.environ.setdefault("SECRET_KEY", "test-only-not-secret-" + "x" * 30)
os.environ.setdefault("OPSPORTAL_VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))
# Log files of test runs (tunnel-monitor.log, connector output) stay out of the repo's logs/.
os.environ.setdefault("LOG_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test", "logs"))
