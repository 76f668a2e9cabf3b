"""Settings for the notification platform.

Every knob is an environment variable (django-environ); the README's configuration table lists
them with their defaults. Defaults are chosen so `make run` works on a fresh machine: SQLite in
`var/`, emails written to a readable outbox folder in `var/outbox/`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from project.env import (
    env_bool,
    env_float,
    env_int,
    parse_bool,
    parse_float,
    parse_networks,
    parse_providers,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()

# SECRET_KEY signs sessions, password-reset links and unsubscribe links (notifications/
# unsubscribe.py): a known key lets anyone forge them. No default: SECRET_KEY, else the random key
# `make` generated once into VAR_DIR/secret_key for this checkout, else refuse to start.
SECRET_KEY_FILE = VAR_DIR / "secret_key"


def _secret_key() -> str:
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    if SECRET_KEY_FILE.is_file() and SECRET_KEY_FILE.read_text().strip():
        return SECRET_KEY_FILE.read_text().strip()
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. It signs sessions, password-reset and unsubscribe links, so it "
        "has no default. Set it (e.g. SECRET_KEY=$(python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(50))')), or use `make run` / `make test`, which generate "
        f"one into {SECRET_KEY_FILE} for this checkout.")


SECRET_KEY = _secret_key()
# Old keys, comma-separated, still accepted when checking signatures (rotate without breaking
# the unsubscribe links already mailed).
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
PORT = env_int("PORT", 8000, minimum=1)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    # Admin login throttling: failed logins per (username, client address) lock that pair out.
    "axes",
    "templates_app",
    "notifications",
    "dlq",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "notifications.api.middleware.ApiBodyLimitMiddleware",
    # Serves static files (admin, the offline Swagger UI assets) from the app itself: no CDN, no
    # separate web server needed, and straight from the app folders (no collectstatic step).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it answers a locked-out login with its 429 page.
    "axes.middleware.AxesMiddleware",
]

# --- Security ------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # Refuses a locked-out (username, address) pair before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Password guessing on the admin login (django-axes): AXES_FAILURE_LIMIT wrong passwords for one
# username from one client address lock that pair out for AXES_COOLOFF_MINUTES (others, and the
# same user from elsewhere, can still log in); a success resets the count. Behind a reverse proxy
# REMOTE_ADDR is the proxy's: the lockout then applies per username through that proxy.
# `manage.py axes_reset` unlocks everyone; the admin lists the attempts.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_VERBOSE = False  # no banner in every process's log; lockouts are still logged

# HTTPS settings for production, each opt-in (deploy/production.env sets them all and passes
# `manage.py check --deploy`). HTTPS=true turns on the secure defaults at once.
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a proxy that terminates TLS and sets X-Forwarded-Proto (and strips it from clients).
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The health and metrics endpoints answer load balancers and Prometheus over plain HTTP inside
# the network: no redirect for them.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
_db = DATABASES["default"]
# Reusing connections matters: with CONN_MAX_AGE=0 every django-q2 enqueue opens two new
# connections (~60 enqueues/s, ARCHITECTURE.md). Health checks drop a connection the server closed.
_db["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 60, minimum=0)
_db["CONN_HEALTH_CHECKS"] = True
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and two clusters share one file: WAL lets readers run beside the writer,
    # IMMEDIATE takes the write lock at BEGIN (no deadlock-on-upgrade), and the timeout makes a
    # writer wait for the lock instead of failing with "database is locked".
    _db.setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": env_int("SQLITE_BUSY_TIMEOUT", 30, minimum=0),
        }
    )
    # Tests run queue workers in other processes, so the test database must be a real file.
    _db.setdefault("TEST", {})["NAME"] = str(VAR_DIR / "test_db.sqlite3")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing root; it serves from apps
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# LOG_FORMAT=json writes one JSON object per line (for a log pipeline); text is for terminals.
# Both carry the structured events' fields (notifications/events.py); project/logs.py.
LOG_FORMAT = env.str("LOG_FORMAT", default="text").strip().lower()
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "project.logs.TextFormatter",
                 "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "pythonjsonlogger.orjson.OrjsonFormatter",
                 "fmt": ["asctime", "levelname", "name", "message", "process"],
                 "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                 "datefmt": "%Y-%m-%dT%H:%M:%S%z"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Structured events, one line per message state change and per recorded chunk (INFO): set
    # LOG_LEVEL_EVENTS=WARNING to silence them alone.
    "loggers": {"notifications.events": {"level": env.str("LOG_LEVEL_EVENTS",
                                                          default=LOG_LEVEL)}},
}

# --- Email ----------------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "outbox"))
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0, minimum=0.1)
# Provider failover: EMAIL_BACKENDS=primary,secondary with EMAIL_<NAME>_BACKEND and
# EMAIL_<NAME>_<OPTION> per provider (notifications/providers.py); empty = EMAIL_BACKEND alone.
EMAIL_PROVIDERS = parse_providers(os.environ)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Notifications <noreply@example.com>")

# Every ANYMAIL_<NAME> variable becomes ANYMAIL["<NAME>"] so any provider's settings can be given
# without a code change. Timeouts are numbers and IGNORE_* flags are booleans (a value that is
# neither refuses to start); the rest are strings.


def _anymail_value(name: str, raw: str) -> object:
    if name.endswith("_TIMEOUT"):
        return parse_float(f"ANYMAIL_{name}", raw, minimum=0)
    if name.startswith("IGNORE_") or name == "DEBUG_API_REQUESTS":
        return parse_bool(f"ANYMAIL_{name}", raw)
    return raw


ANYMAIL: dict[str, Any] = {
    key.removeprefix("ANYMAIL_"): _anymail_value(key.removeprefix("ANYMAIL_"), value)
    for key, value in os.environ.items()
    if key.startswith("ANYMAIL_") and len(key) > len("ANYMAIL_")
}
ANYMAIL.setdefault("REQUESTS_TIMEOUT", EMAIL_TIMEOUT)

# --- Delivery engine ------------------------------------------------------------------------------
NOTIFY: dict[str, Any] = {
    # Messages claimed per drain round trip; one transaction claims, sends happen outside it.
    "BATCH_SIZE": env_int("NOTIFY_BATCH_SIZE", 200, minimum=1),
    # Sends each drain keeps in flight (threads, one backend connection each): real providers
    # answer in 50-500 ms, so one at a time delivers 2-20 emails/s. 64 measured best at 100 ms
    # on 2 cores (16: 269/s, 32: 464/s, 64: 687/s with 2 workers; docs/performance.md).
    "SEND_CONCURRENCY": env_int("NOTIFY_SEND_CONCURRENCY", 64, minimum=1),
    # Sends per second to the provider, shared by every worker on every host (Redis with
    # REDIS_URL, else the database); 0 = no limit.
    "PROVIDER_RATE_PER_SECOND": env_float("NOTIFY_PROVIDER_RATE_PER_SECOND", 0.0, minimum=0),
    # A drain task stops claiming after this long so it ends well inside the django-q2 timeout.
    "DRAIN_BUDGET_SECONDS": env_float("NOTIFY_DRAIN_BUDGET_SECONDS", 20.0, minimum=0),
    # A drain with nothing due stays this long, looking every 25 ms, before it ends: mail that
    # arrives meanwhile goes out over its open connections instead of waiting for a new drain.
    "DRAIN_IDLE_SECONDS": env_float("NOTIFY_DRAIN_IDLE_SECONDS", 1.0, minimum=0),
    # Waiting drains sleep on PostgreSQL LISTEN and wake on the NOTIFY of each wake-up instead of
    # probing the claim index every 25 ms (notifications/listener.py). No effect on SQLite.
    "DRAIN_LISTEN": env_bool("NOTIFY_DRAIN_LISTEN", True),
    # CPU priority of each lane's qcluster processes (added niceness; notifications/priority.py):
    # bulk yields the CPU to the transactional lane when both want it.
    "LANE_NICE": {
        "transactional": env_int("NOTIFY_NICE_TRANSACTIONAL", 0, minimum=-20),
        "bulk": env_int("NOTIFY_NICE_BULK", 10, minimum=-20),
    },
    # A claimed message whose worker died is requeued by the sweeper after this long.
    "LEASE_SECONDS": env_int("NOTIFY_LEASE_SECONDS", 120, minimum=1),
    # Exponential backoff with full jitter: uniform(0, min(cap, base * 2 ** (attempt - 1))).
    "RETRY_BASE_SECONDS": env_float("NOTIFY_RETRY_BASE_SECONDS", 30.0, minimum=0),
    "RETRY_CAP_SECONDS": env_float("NOTIFY_RETRY_CAP_SECONDS", 3600.0, minimum=0),
    # The circuit breaker, one per provider shared by every worker and host (notifications/flow.py):
    # it opens when at least FAILURE_RATE of the last WINDOW sends (and MIN_CALLS of them) failed
    # transiently; nobody claims for that provider for PAUSE seconds, then one drain probes with a
    # single message. WINDOW 0 turns it off.
    "BREAKER_WINDOW": env_int("NOTIFY_BREAKER_WINDOW", 100, minimum=0),
    "BREAKER_MIN_CALLS": env_int("NOTIFY_BREAKER_MIN_CALLS", 10, minimum=1),
    "BREAKER_FAILURE_RATE": env_float("NOTIFY_BREAKER_FAILURE_RATE", 0.5, minimum=0.01),
    "BREAKER_PAUSE_SECONDS": env_float("NOTIFY_BREAKER_PAUSE_SECONDS", 10.0, minimum=0),
    # A 429 without Retry-After holds every worker's sends to that provider this long.
    "THROTTLE_SECONDS": env_float("NOTIFY_THROTTLE_SECONDS", 1.0, minimum=0),
    # Domain used in the stable Message-ID header of every email.
    "MESSAGE_ID_DOMAIN": env.str("NOTIFY_MESSAGE_ID_DOMAIN", default="notifications.local"),
    "SWEEP_MINUTES": env_int("NOTIFY_SWEEP_MINUTES", 1, minimum=1),
    # Finished messages (sent, delivered, bounced, complained, cancelled, suppressed) and their
    # attempts are deleted this many days after their last change (0 = kept forever); dead
    # letters wait for an operator. notifications/retention.py: every RETENTION_MINUTES a task
    # on the bulk cluster deletes batches of RETENTION_BATCH for at most
    # RETENTION_BUDGET_SECONDS, without sleeping (it holds a bulk worker meanwhile).
    "RETENTION_DAYS": env_int("NOTIFY_RETENTION_DAYS", 30, minimum=0),
    "RETENTION_MINUTES": env_int("NOTIFY_RETENTION_MINUTES", 1, minimum=1),
    "RETENTION_BATCH": env_int("NOTIFY_RETENTION_BATCH", 500, minimum=1),
    "RETENTION_BUDGET_SECONDS": env_float("NOTIFY_RETENTION_BUDGET_SECONDS", 2.0, minimum=0.1),
    # Each qcluster worker process writes its beat this often (notifications/clusters.py); the
    # dashboard calls a cluster down after three missed beats.
    "CLUSTER_BEAT_SECONDS": env_float("NOTIFY_CLUSTER_BEAT_SECONDS", 10.0, minimum=0.1),
    # How long a process reuses event types, template versions and producers' scopes.
    "LOOKUP_CACHE_SECONDS": env_float("NOTIFY_LOOKUP_CACHE_SECONDS", 5.0, minimum=0),
    # notify() refuses a send_at further ahead than this, or more than the skew in the past.
    "SEND_AT_HORIZON_DAYS": env_int("NOTIFY_SEND_AT_HORIZON_DAYS", 30, minimum=1),
    "SEND_AT_SKEW_SECONDS": 60,
}

# --- Deliverability: tracking webhooks, suppression, unsubscribe, reputation guard -------------
NOTIFY_DELIVERABILITY: dict[str, Any] = {
    # Where recipients reach this platform (unsubscribe links): scheme, host and any path prefix.
    "PUBLIC_URL": env.str("NOTIFY_PUBLIC_URL", default=f"http://localhost:{PORT}").rstrip("/"),
    # An address for RFC 2369 mailto: unsubscribes (List-Unsubscribe); empty = the URL only.
    "UNSUBSCRIBE_MAILTO": env.str("NOTIFY_UNSUBSCRIBE_MAILTO", default=""),
    # This many soft bounces of one address within SOFT_BOUNCE_DAYS suppress it (0 = never).
    "SOFT_BOUNCE_LIMIT": env_int("NOTIFY_SOFT_BOUNCE_LIMIT", 3, minimum=0),
    "SOFT_BOUNCE_DAYS": env_int("NOTIFY_SOFT_BOUNCE_DAYS", 7, minimum=1),
    # The reputation guard (notifications/reputation.py): over the last WINDOW_HOURS (or since
    # the lane was last resumed), with at least MIN_VOLUME emails sent, a hard-bounce rate above
    # BOUNCE_RATE or a complaint rate above COMPLAINT_RATE pauses the bulk lane and alerts
    # (the transactional lane only alerts). SES reviews accounts at 5% and 0.1%.
    "WINDOW_HOURS": env_int("NOTIFY_REPUTATION_WINDOW_HOURS", 24, minimum=1),
    "MIN_VOLUME": env_int("NOTIFY_REPUTATION_MIN_VOLUME", 500, minimum=1),
    "BOUNCE_RATE": env_float("NOTIFY_REPUTATION_BOUNCE_RATE", 0.04, minimum=0),
    "COMPLAINT_RATE": env_float("NOTIFY_REPUTATION_COMPLAINT_RATE", 0.0008, minimum=0),
}

# --- Prometheus metrics (/metrics, notifications/metrics.py) ------------------------------------
NOTIFY_METRICS: dict[str, Any] = {
    # Set: "Authorization: Bearer <TOKEN>" is the only way in, from anywhere. Empty: no token.
    "TOKEN": env.str("NOTIFY_METRICS_TOKEN", default=""),
    # Without a token, only these client addresses are served (REMOTE_ADDR; a request a proxy
    # forwarded is refused). Default: loopback only.
    "ALLOW": parse_networks("NOTIFY_METRICS_ALLOW",
                            os.environ.get("NOTIFY_METRICS_ALLOW", "127.0.0.1/32,::1/128")),
}

# --- Dead letter queue operations and alerts (dlq/) -----------------------------------------------
NOTIFY_DLQ: dict[str, Any] = {
    # A requeue/discard operation works in chunks of this many rows, one transaction each.
    "CHUNK_SIZE": env_int("NOTIFY_DLQ_CHUNK_SIZE", 100, minimum=1),
    # One operation task works this long (at most half of Q_TIMEOUT), then queues its successor.
    "TASK_BUDGET_SECONDS": env_float("NOTIFY_DLQ_TASK_BUDGET_SECONDS", 20.0, minimum=1),
    # An unfinished operation whose task holds no lease for this long is resumed.
    "LEASE_GRACE_SECONDS": env_float("NOTIFY_DLQ_LEASE_GRACE_SECONDS", 30.0, minimum=1),
    # The django-q2 cluster that runs operations and the alert check.
    "CLUSTER": env.str("NOTIFY_DLQ_CLUSTER", default="bulk"),
}
NOTIFY_ALERTS: dict[str, Any] = {
    # Alert when the DLQ holds more than this many messages (0 = never).
    "DLQ_SIZE": env_int("NOTIFY_ALERT_DLQ_SIZE", 1000, minimum=0),
    # Alert when a lane's oldest due message has waited longer than this (0 = never).
    "OLDEST_DUE_SECONDS": env_int("NOTIFY_ALERT_OLDEST_DUE_SECONDS", 600, minimum=0),
    # Alert when a lane's cluster has not run a task (heartbeat) for this long (0 = never).
    "HEARTBEAT_SECONDS": env_int("NOTIFY_ALERT_HEARTBEAT_SECONDS", 300, minimum=0),
    # Who gets alert emails (comma list; empty = none) and an optional webhook (POST JSON).
    "EMAILS": env.list("NOTIFY_ALERT_EMAILS", default=[]),
    "WEBHOOK_URL": env.str("NOTIFY_ALERT_WEBHOOK_URL", default=""),
    "WEBHOOK_TIMEOUT": env_float("NOTIFY_ALERT_WEBHOOK_TIMEOUT", 5.0, minimum=0.1),
}

# --- django-q2 ------------------------------------------------------------------------------------
# One cluster per lane, selected with Q_CLUSTER_NAME=<lane> (qcluster --name is ignored on Linux).
# All lanes share `name`, which is the signing salt for queued tasks.
LANES = ("transactional", "bulk")
REDIS_URL = env.str("REDIS_URL", default="")
_Q_TIMEOUT = env_int("Q_TIMEOUT", 60, minimum=1)
Q_CLUSTER: dict[str, Any] = {
    "name": "notifications",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": _Q_TIMEOUT,
    # ORM broker re-delivers a task after `retry` seconds: keep it far above `timeout`
    # (notifications/checks.py refuses settings where it is not).
    "retry": env_int("Q_RETRY", _Q_TIMEOUT * 5, minimum=1),
    "max_attempts": 1,
    "save_limit": 100,
    "catch_up": False,
    "poll": env_float("Q_POLL", 0.1, minimum=0),
    # queue_limit = workers: a busy cluster does not hoard queued drain tasks while another
    # host serving the same lane sits idle.
    "ALT_CLUSTERS": {
        lane: {"workers": workers, "queue_limit": workers}
        for lane, workers in (
            ("transactional", env_int("Q_WORKERS_TRANSACTIONAL", 2, minimum=1)),
            ("bulk", env_int("Q_WORKERS_BULK", 2, minimum=1)),
        )
    },
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- API ------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["notifications.api.authentication.BearerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["notifications.api.renderers.ORJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["notifications.api.renderers.ORJSONRenderer"],
    "EXCEPTION_HANDLER": "notifications.api.errors.handle",
    "UNAUTHENTICATED_USER": None,
}
NOTIFY_API: dict[str, Any] = {
    # Pending + retry messages per lane past which the API answers 429 (bulk sheds first).
    "HIGH_WATER": {
        "transactional": env_int("NOTIFY_HIGH_WATER_TRANSACTIONAL", 100_000, minimum=0),
        "bulk": env_int("NOTIFY_HIGH_WATER_BULK", 20_000, minimum=0),
    },
    "RETRY_AFTER": {"transactional": 5, "bulk": 30},
    "DEPTH_CACHE_SECONDS": env_float("NOTIFY_DEPTH_CACHE_SECONDS", 1.0, minimum=0),
    "BATCH_MAX": env_int("NOTIFY_API_BATCH_MAX", 1000, minimum=1),
    "MAX_BODY_BYTES": env_int("NOTIFY_API_MAX_BODY_BYTES", 2 * 1024 * 1024, minimum=1),
}
DATA_UPLOAD_MAX_MEMORY_SIZE = NOTIFY_API["MAX_BODY_BYTES"]

# The rate limiter counts in the cache: Redis (shared by every web process) when REDIS_URL is set.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
SPECTACULAR_SETTINGS = {
    "TITLE": "Notification platform API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "Publish events that become emails. Errors share one shape: "
    '{"error": {"code", "message", "fields"}}.',
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
