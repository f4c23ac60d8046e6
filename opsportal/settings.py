"""Settings, read from the environment (and an optional `.env` file) through typed helpers.

Every setting is documented in the README's "Settings" table.
"""

from __future__ import annotations

import secrets
import sys
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE as CSP_NONE
from csp.constants import SELF as CSP_SELF
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_choice, env_db, env_float, env_int, env_list, env_str
from core.files import owner_only_umask, portal_paths, tighten
from core.logconfig import build_logging

# Before anything is created: the portal's files are owner-only whatever the umask (opsportal/files.py).
owner_only_umask()
BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("OPSPORTAL_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)

# A local `.env` (written by `make setup`) fills in what the real environment leaves unset.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = env_str("SECRET_KEY", "")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY: must be set when DEBUG is off (run `make setup`, or export one)")
    # Embedded development default: generated once, kept beside the database.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Where jobs reach the portal: `manage.py pingurl` prints PUBLIC_URL + /ping/<uuid>.
PUBLIC_URL = env_str("PUBLIC_URL", "http://127.0.0.1:8000")
# Pings by name (/ping/<PING_KEY>/<service>): off while empty; a secret like a token (at least 16 characters).
PING_KEY = env_str("PING_KEY", "")
if PING_KEY and len(PING_KEY) < 16:
    raise ImproperlyConfigured("PING_KEY: at least 16 characters (it is the secret of every ping by name)")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # Login throttling (its models, admin and `axes_reset`) and the Content-Security-Policy header.
    "axes",
    "csp",
    # The layers, foundation first (docs/architecture.md; import-linter holds them in `make lint`).
    "core",
    "health",
    "tunnels",
    "recovery",
    "notify",
    # Before django_q: dispatch's `qcluster` command (Django-Q2's, plus the resident dispatcher loop) wins.
    "dispatch",
    "django_q",
    "api",
    "dashboard",
    "status",
    "configfile",
    # The project itself: `doctor` and `quickstart`.
    "opsportal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last of Django's, as axes asks: it turns a locked-out login into the 429 lockout page.
    "axes.middleware.AxesMiddleware",
    # Innermost: after the view, note the user the portal authenticated for the access log (gunicorn.conf.py).
    "opsportal.middleware.access_log_user",
    # A status page's own domain: / with its `hostname` in the Host header is that page (status.middleware).
    "status.middleware.status_hostnames",
]

ROOT_URLCONF = "opsportal.urls"
WSGI_APPLICATION = "opsportal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.views.portal_context",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 30_000, minimum=0)
DB_CONNECT_TIMEOUT = env_int("DB_CONNECT_TIMEOUT", 5, minimum=1)
SQLITE_BUSY_TIMEOUT_MS = env_int("SQLITE_BUSY_TIMEOUT_MS", 5_000, minimum=0)
# Hardening (opsportal/db.py): retries of transient errors, the circuit breaker, the slow-query log.
DB_RETRY_ATTEMPTS = env_int("DB_RETRY_ATTEMPTS", 3, minimum=0)
DB_RETRY_BACKOFF_MS = env_int("DB_RETRY_BACKOFF_MS", 1_000, minimum=0)
DB_BREAKER_FAIL_MAX = env_int("DB_BREAKER_FAIL_MAX", 5, minimum=1)
DB_BREAKER_RESET_S = env_int("DB_BREAKER_RESET_S", 30, minimum=1)
SLOW_QUERY_MS = env_int("SLOW_QUERY_MS", 5_000, minimum=0)
# Outage spool (opsportal/spool.py): bounded, so a long outage cannot fill the disk.
SPOOL_MAX_BYTES = env_int("SPOOL_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)

_default_db = env_db("DATABASE_URL", f"sqlite:///{VAR_DIR / 'opsportal.sqlite3'}")
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    _default_db["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so two writers wait instead of deadlocking.
        "transaction_mode": "IMMEDIATE",
        "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    _default_db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
elif _default_db["ENGINE"] == "django.db.backends.postgresql":
    _default_db.setdefault("OPTIONS", {})
    _default_db["OPTIONS"].setdefault("connect_timeout", DB_CONNECT_TIMEOUT)
    _default_db["OPTIONS"].setdefault("options", f"-c statement_timeout={DB_STATEMENT_TIMEOUT_MS}")
    _default_db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
    _default_db["CONN_HEALTH_CHECKS"] = True
_test_db_name = env_str("TEST_DATABASE_NAME", "")
if _test_db_name:
    _default_db["TEST"] = {"NAME": _test_db_name}
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache: shared between processes (qcluster stats, dashboard) -------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "opsportal_cache",
            # The bad-token counts live here: culling at Django's default 300 entries could drop them under load.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
# The pings' rate limit (api.ping): Redis when there is one, else each process's memory (a limit per worker).
# Never the database cache: its count and write per ping would cost more than the ping itself.
CACHES["pings"] = (
    {**CACHES["default"], "KEY_PREFIX": "pings"}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "opsportal-pings"}
)

# --- Auth, i18n, static --------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
# Axes' backend first: it refuses a locked-out user+address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Login throttling (django-axes): the login form and the admin login ------------------------
# Locked out after LOGIN_FAILURE_LIMIT failures of one username from one address within
# LOGIN_LOCKOUT_MINUTES; the lock lifts LOGIN_LOCKOUT_MINUTES after the last failure, or at once with
# `manage.py axes_reset` or by deleting the access attempt in the admin. Failures and lockouts are logged
# to system-monitor.log (opsportal.login_throttle), never with the password.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1)
AXES_ENABLED = env_bool("LOGIN_THROTTLE", True)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
# Per user+address: an attacker cannot lock the real operator out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_CALLABLE = "opsportal.login_throttle.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# The address is the TCP peer (REMOTE_ADDR), never a client-sent header; behind nginx (which sets
# X-Forwarded-For to its peer, deploy/nginx-opsportal.conf) set LOGIN_PROXY_COUNT=1.
LOGIN_PROXY_COUNT = env_int("LOGIN_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "core.clients.client_address"
# A success does not wipe the failures: an attacker holding one account cannot reset the count.
AXES_RESET_ON_SUCCESS = False

# --- Content-Security-Policy (django-csp) ------------------------------------------------------
# Everything from the portal itself: no inline script, no inline style (static/live.js and
# static/opsportal.css carry them), no plugins, no framing, forms post only here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [CSP_SELF],
        "script-src": [CSP_SELF],
        "style-src": [CSP_SELF],
        "img-src": [CSP_SELF],
        "connect-src": [CSP_SELF],
        "object-src": [CSP_NONE],
        "base-uri": [CSP_SELF],
        "form-action": [CSP_SELF],
        "frame-ancestors": [CSP_NONE],
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `collectstatic` puts them: outside the code directory if it should stay read-only.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Production: HTTPS, cookies, static files (docs/deploy.md) ----------------
# `HTTPS=true` says the portal is served over TLS (ending at nginx in front of gunicorn); it turns on
# secure cookies, the redirect and HSTS. Each can still be set on its own.
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
# Load balancers and the portal's own self-probe hit these over plain HTTP on loopback.
SECURE_REDIRECT_EXEMPT = [r"^health/live$", r"^health/ready$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# gunicorn speaks plain HTTP, so with HTTPS on, the scheme can only come from the proxy's header.
if env_bool("SECURE_PROXY_SSL_HEADER", HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Subdomains and the browsers' preload list concern the whole domain, not this app: they are the
# operator's explicit choice, so their `check --deploy` reminders are silenced while they are off.
SILENCED_SYSTEM_CHECKS = [
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]
SESSION_COOKIE_HTTPONLY = True

# Hashed, compressed static files served by whitenoise (`collectstatic`, run by `make setup`, builds
# them). Debug runs and the test suite use plain files so they never need a collectstatic first.
_TESTING = "pytest" in sys.modules
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG and not _TESTING)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Monitoring behaviour ----------------------------------------------------
AUTO_RECOVERY_ENABLED = env_bool("AUTO_RECOVERY_ENABLED", True)
# Recovery policy (recovery/policy.py): the longest backoff wait, the global cap on automatic
# attempts per rolling hour, how long a service must stay healthy before its failure counters
# reset, and the age at which an attempt still `in_progress` counts as abandoned (its process died).
RECOVERY_BACKOFF_CAP = env_int("RECOVERY_BACKOFF_CAP", 3600, minimum=0)
RECOVERY_MAX_AUTO_PER_HOUR = env_int("RECOVERY_MAX_AUTO_PER_HOUR", 30, minimum=0)
# Per service too, so one crash-looping service cannot use up the global cap while another waits.
# Strictly below the global cap (a cap of 1 is the one exception: 1 of 1), else one service could still use it up.
RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR = env_int(
    "RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR",
    min(6, max(RECOVERY_MAX_AUTO_PER_HOUR - 1, 1), RECOVERY_MAX_AUTO_PER_HOUR),
    minimum=0,
)
if max(RECOVERY_MAX_AUTO_PER_HOUR, 2) <= RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR:
    raise ImproperlyConfigured(
        "RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR: must be below RECOVERY_MAX_AUTO_PER_HOUR "
        f"({RECOVERY_MAX_AUTO_PER_HOUR}), got {RECOVERY_MAX_AUTO_PER_SERVICE_PER_HOUR}"
    )
RECOVERY_RESET_AFTER = env_int("RECOVERY_RESET_AFTER", 600, minimum=0)
RECOVERY_STALE_AFTER = env_int("RECOVERY_STALE_AFTER", 900, minimum=60)
# Threads a probe round uses; probes are I/O bound, so more threads than cores is right.
PROBE_CONCURRENCY = env_int("PROBE_CONCURRENCY", 64, minimum=1)
# Largest response body an HTTP probe reads before giving up on it (bytes).
PROBE_MAX_BODY_BYTES = env_int("PROBE_MAX_BODY_BYTES", 1_048_576, minimum=1024)
HEALTH_PUBLIC = env_bool("HEALTH_PUBLIC", True)
# When set, /metrics needs `Authorization: Bearer <METRICS_TOKEN>` (or an API token / staff session).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# Seconds a web process serves /health/status's and /metrics' database reads from its snapshot (api.snapshot);
# the database check and circuit breaker stay live. 0: read on every request.
STATUS_CACHE_SECONDS = env_float("STATUS_CACHE_SECONDS", 2.0, minimum=0)
# Seconds a status page (HTML, summary.json, feed.atom) and a badge are served from the Django cache; 0: off.
STATUS_PAGE_CACHE_SECONDS = env_float("STATUS_PAGE_CACHE_SECONDS", 30.0, minimum=0)
# Seconds between the dashboard's live refreshes (overview and service page).
DASHBOARD_REFRESH_SECONDS = env_int("DASHBOARD_REFRESH_SECONDS", 10, minimum=1)
# Service cards per overview page (problems first); counts and the banner always cover every service.
DASHBOARD_CARDS_PER_PAGE = env_int("DASHBOARD_CARDS_PER_PAGE", 60, minimum=1)

# --- Logging -------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
# Log files (`system-monitor.log`, the tunnel watchdog's `tunnel-monitor.log`) rotate daily, kept this many days;
# connector output (`tunnel-NAME.log`) is appended by the connector itself and not rotated here.
LOG_DIR = Path(env_str("LOG_DIR", str(BASE_DIR / "logs")))
LOG_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
# What an earlier run under a looser umask left readable is tightened at every start (doctor shows it).
tighten(portal_paths(VAR_DIR, LOG_DIR, DATABASES["default"], public=[STATIC_ROOT]))
LOG_RETENTION_DAYS = env_int("LOG_RETENTION_DAYS", 7, minimum=1)
LOG_FORMAT = env_choice("LOG_FORMAT", "human", ("human", "json"))
# Console, logs/system-monitor.log and logs/tunnel-monitor.log, in one format (opsportal/logconfig.py).
LOGGING = build_logging(LOG_DIR, fmt=LOG_FORMAT, level=LOG_LEVEL, retention_days=LOG_RETENTION_DAYS)
# Failed logins and lockouts (opsportal.login_throttle) beside the monitors' lines; axes' own logger only
# for its warnings, on the console (its lines name the username and address, never the password).
LOGGING["loggers"]["opsportal.auth"] = {"handlers": ["system_file"], "propagate": True}
LOGGING["loggers"]["axes"] = {"handlers": ["console"], "level": "WARNING", "propagate": False}


# --- Django-Q2 and the probe dispatcher (health/scheduler.py, docs/architecture.md) --------
# Every qcluster runs the ~1 s claim loop in its main process for as long as it runs (DISPATCH_RESIDENT), so
# a surviving cluster carries the work at once when another dies. The every-minute dispatcher task is the
# fallback: it runs a loop for DISPATCH_LOOP_SECONDS only when no resident loop is alive.
DISPATCH_RESIDENT = env_bool("DISPATCH_RESIDENT", True)
DISPATCH_LOOP_SECONDS = env_int("DISPATCH_LOOP_SECONDS", 85, minimum=5)
DISPATCH_TICK_MS = env_int("DISPATCH_TICK_MS", 1_000, minimum=50)
# A probe in a scheduled round is cut at this many seconds (and at its interval): a round fits its slot.
DISPATCH_MAX_PROBE_S = env_int("DISPATCH_MAX_PROBE_S", 50, minimum=1)
# Retention (health/rollups.py): raw results are rolled up hourly, then pruned PRUNE_BATCH_SIZE rows at a time.
RAW_RETENTION_DAYS = env_int("RAW_RETENTION_DAYS", 7, minimum=1)
ROLLUP_RETENTION_DAYS = env_int("ROLLUP_RETENTION_DAYS", 400, minimum=1)
PRUNE_BATCH_SIZE = env_int("PRUNE_BATCH_SIZE", 5_000, minimum=1)
# Notifications (health/notify.py): attempts per delivery, the first retry wait (doubling), the send lease.
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 5, minimum=1)
NOTIFY_RETRY_SECONDS = env_int("NOTIFY_RETRY_SECONDS", 30, minimum=0)
NOTIFY_TIMEOUT_SECONDS = env_int("NOTIFY_TIMEOUT_SECONDS", 120, minimum=10)
# Send a notification seconds after its event commits (notify.realtime); false: the minute schedule alone.
NOTIFY_ON_COMMIT = env_bool("NOTIFY_ON_COMMIT", True)
# Flap detection (health/flapping.py): weighted % state change over the last 21 results.
FLAP_DETECTION = env_bool("FLAP_DETECTION", True)
FLAP_HIGH_THRESHOLD = env_float("FLAP_HIGH_THRESHOLD", 20.0, minimum=0)
FLAP_LOW_THRESHOLD = env_float("FLAP_LOW_THRESHOLD", 5.0, minimum=0)
if FLAP_LOW_THRESHOLD > FLAP_HIGH_THRESHOLD:
    raise ImproperlyConfigured("FLAP_LOW_THRESHOLD: must not exceed FLAP_HIGH_THRESHOLD")
# SLA report (health/sla.py): true leaves failures a parent's incident caused out of downtime and of probed
# time (shown apart either way).
SLA_EXCLUDE_DEPENDENCY_DOWNTIME = env_bool("SLA_EXCLUDE_DEPENDENCY_DOWNTIME", False)
Q_CLUSTER = {
    "name": "opsportal",
    "workers": env_int("Q_WORKERS", 3, minimum=2),
    # A task is killed after `timeout` and never re-delivered: retry > timeout, one attempt, failures acked.
    "timeout": DISPATCH_LOOP_SECONDS + DISPATCH_MAX_PROBE_S + 15,
    "retry": DISPATCH_LOOP_SECONDS + DISPATCH_MAX_PROBE_S + 45,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 250,
    # Cluster stats go to the default cache: the database cache or Redis, both shared between processes.
    "cache": "default",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- API: bad bearer tokens per client address (api.throttle; counted in the shared cache) ---
API_BAD_TOKEN_LIMIT = env_int("API_BAD_TOKEN_LIMIT", 20, minimum=1)
API_BAD_TOKEN_WINDOW = env_int("API_BAD_TOKEN_WINDOW", 60, minimum=1)
