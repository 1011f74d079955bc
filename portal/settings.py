"""The one settings module. Every value comes from the environment.

With nothing set, the embedded stack of DESIGN.md: SQLite under var/, a
SQLite Celery broker (portal/core/broker.py), a SQLite channel layer, files
under var/ and a local anvil node. DATABASE_URL, REDIS_URL, CHAIN_RPC_URL and
the S3 variables switch to the production stack. Secrets may be given as
`<NAME>_FILE` (a path).
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from csp.constants import NONE, SELF

from chain.anvil import ANVIL_DEV_KEYS

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MEDCHAIN_VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()


def secret(name: str, default: str | None = None) -> str | None:
    """Read NAME, or the file named by NAME_FILE (how secrets are mounted)."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        return Path(path).read_text().strip()
    return env.str(name, default=default)


# "embedded": one machine, no servers; "production": real servers, strict checks.
STACK = env.str("MEDCHAIN_STACK", default="embedded")
PRODUCTION = STACK == "production"

DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise environ.ImproperlyConfigured(
        "DJANGO_DEBUG is refused in production: debug pages show settings and source to anyone"
    )
_dev_secret = "embedded-only-insecure-key-never-used-in-production-0123456789abcdef"
SECRET_KEY = secret("DJANGO_SECRET_KEY", default=None if PRODUCTION else _dev_secret) or ""
if PRODUCTION and (not SECRET_KEY or _dev_secret == SECRET_KEY):
    raise environ.ImproperlyConfigured("production needs DJANGO_SECRET_KEY or _FILE")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "channels",
    "portal.core",
    "portal.consortium",
    "portal.nodes",
    "portal.datasets",
]
if not secret("REDIS_URL", default=""):
    INSTALLED_APPS.append("channels_lite")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files without DEBUG, before anything that would touch a session or the database.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Before anything reads a body (CSRF reads forms): an oversized one is refused unread.
    "portal.core.middleware.RequestBodyLimitMiddleware",
    "portal.consortium.middleware.AdminTwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Content-Security-Policy: nothing from another origin, no inline script or style.
# Pyodide compiles its WebAssembly ('wasm-unsafe-eval'); wallets inject their provider as
# an extension, which a page's policy does not govern. CHAIN_PUBLIC_RPC_URL, when set, is
# the one other origin the upload page may call (to read node keys from the chain).
_csp_connect = [SELF]
if env.str("CHAIN_PUBLIC_RPC_URL", default=""):
    _csp_connect.append(env.str("CHAIN_PUBLIC_RPC_URL"))
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, "'wasm-unsafe-eval'"],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": _csp_connect,
        "worker-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"
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
                "portal.consortium.context.current_member",
            ]
        },
    }
]

DATABASES = {
    # A URL with a password is a secret: DATABASE_URL_FILE names a file that holds it.
    "default": env.db_url_config(
        secret("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'medchain.sqlite3'}") or ""
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker write at once: IMMEDIATE + WAL stop "database is locked" (FACTS.md).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # One psycopg pool per process instead of a new connection per request: under ASGI each
    # request runs in a thread of its own, so without a cap ~100 concurrent requests would
    # take all of PostgreSQL's max_connections (docs/load.md sizes the pool). A request that
    # waits longer than the timeout for a connection fails; 0 as max size turns pooling off.
    _pool_max = env.int("DATABASE_POOL_MAX_SIZE", default=8)
    if _pool_max > 0:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses persistent connections with it
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(env.int("DATABASE_POOL_MIN_SIZE", default=1), _pool_max),
            "max_size": _pool_max,
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=20.0),
        }
# A hospital node (`manage.py run_node`) talks to the portal only through the
# broker and the REST API: it gets no database at all.
ROLE = env.str("MEDCHAIN_ROLE", default="portal")
if ROLE == "node":
    DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Every password check, the admin's sign-in included, goes through the lockout first.
AUTHENTICATION_BACKENDS = ["portal.core.signin.LockoutModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Signed-in sessions end after this long (a working day by default), not Django's two weeks.
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_SECONDS", default=8 * 3600)
# Sign-in lockout (portal/core/signin.py): this many failed passwords or two-factor codes in
# one window lock the account, and separately the client address, until the window ends.
# Staff invitations are mailed through Django's email backend: the console in the embedded
# stack (the demo prints them), SMTP (EMAIL_HOST, EMAIL_PORT...) once production sets it.
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="MedChain <noreply@medchain.invalid>")
SIGNIN_MAX_FAILURES_PER_ACCOUNT = env.int("SIGNIN_MAX_FAILURES_PER_ACCOUNT", default=10)
SIGNIN_MAX_FAILURES_PER_ADDRESS = env.int("SIGNIN_MAX_FAILURES_PER_ADDRESS", default=50)
SIGNIN_LOCKOUT_SECONDS = env.int("SIGNIN_LOCKOUT_SECONDS", default=15 * 60)
# API tokens expire this many days after they are issued; a node's token lives longer, since
# a person must carry a new one to the node's machine.
API_TOKEN_DAYS = env.int("API_TOKEN_DAYS", default=30)
NODE_TOKEN_DAYS = env.int("NODE_TOKEN_DAYS", default=90)
# The most bytes a request body may have; the chunk-upload route has its own cap
# (DATASET_MAX_CHUNK_BYTES) and reads its body as a stream.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("REQUEST_MAX_BYTES", default=1024 * 1024)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns at every start without it
STATICFILES_DIRS = [BASE_DIR / "portal" / "static"]
# Embedded: WhiteNoise serves the source folders themselves (indexed once at start), so the
# demo needs no collectstatic copy of Pyodide and serves what `make static` last built.
# Production runs `collectstatic` into STATIC_ROOT, which WhiteNoise serves.
WHITENOISE_USE_FINDERS = not PRODUCTION
MEDIA_ROOT = VAR_DIR / "media"

REDIS_URL = secret("REDIS_URL", default="") or ""
# Throttle, lockout and relay counters must be shared by every web and worker process, or
# each process counts on its own. Production: Redis. Embedded: files under var/, which the
# web and worker processes share on one machine without a table to create or a write on the
# SQLite database (whose one writer lock the web and the worker already contend for).
CACHES: dict[str, dict[str, object]]
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "portal.core.cache.SharedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "medchain",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
            # Past this many files it deletes a third at random: keep live counters clear of it.
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    }
S3_BUCKET = env.str("S3_BUCKET", default="")
if S3_BUCKET:
    _s3_options = {
        "bucket_name": S3_BUCKET,
        "endpoint_url": env.str("S3_ENDPOINT_URL", default="") or None,
        "region_name": env.str("S3_REGION", default="us-east-1"),
        "access_key": secret("S3_ACCESS_KEY_ID", default=""),
        "secret_key": secret("S3_SECRET_ACCESS_KEY", default=""),
        "default_acl": None,
        "file_overwrite": False,
    }
    _default_storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _s3_options}
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Celery: Redis (or any URL) in production; embedded, one SQLite file under var/ through
# our own kombu transport (portal/core/broker.py says why not kombu's filesystem one).
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default=REDIS_URL or f"sqlite:///{VAR_DIR / 'broker' / 'broker.sqlite3'}"
)
if CELERY_BROKER_URL.startswith("filesystem:"):
    raise environ.ImproperlyConfigured(
        "CELERY_BROKER_URL=filesystem:// loses messages (celery/kombu#1551): unset it for "
        "the embedded SQLite broker, or give a Redis URL"
    )
if CELERY_BROKER_URL.startswith("sqlite:"):
    CELERY_BROKER_TRANSPORT = "portal.core.broker:Transport"
    # ≈ 20 ms from enqueue to pick-up (median); an idle poll is one indexed read.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"polling_interval": 0.05}
else:
    # Redelivery after a hard kill waits this long: just above the longest task.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 900}
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "portal"
CELERY_BEAT_SCHEDULE_SECONDS = env.float("CELERY_BEAT_SECONDS", default=5.0)
NODE_CHECK_IN_SECONDS = env.int("NODE_CHECK_IN_SECONDS", default=30)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    # Not the AIO variant, which leaks threads per async_to_sync call (FACTS.md).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_lite.layers.core.SQLiteChannelLayer",
            "CONFIG": {"database": "default", "capacity": 1000},
        }
    }

# The chain: a local anvil node by default, any JSON-RPC endpoint in production.
CHAIN_RPC_URL = env.str("CHAIN_RPC_URL", default="http://127.0.0.1:8545")
CHAIN_RELAYER_KEY = secret("CHAIN_RELAYER_KEY", default="") or ""
if PRODUCTION and CHAIN_RELAYER_KEY.lower().removeprefix("0x") in {
    key.removeprefix("0x") for key in ANVIL_DEV_KEYS
}:
    raise environ.ImproperlyConfigured(
        "CHAIN_RELAYER_KEY is one of anvil's public development keys: anyone could spend its "
        "gas or sign as it; make a key of your own for the relayer"
    )
CHAIN_CONFIRMATIONS = env.int("CHAIN_CONFIRMATIONS", default=0)
# The deployment record (chain id, registry addresses) that `deploy_contracts` writes and that
# hospital-side tools (nodes, the uploader) pin: they never take the addresses from the portal.
CHAIN_DEPLOYMENT_RECORD = Path(
    env.str("MEDCHAIN_CHAIN_RECORD", default=str(VAR_DIR / "chain-deployment.json"))
)
# A public read-only RPC URL the upload page may read node keys from when the wallet cannot
# answer eth_call (empty: the wallet's provider only). The page also needs it allowed by the CSP.
CHAIN_PUBLIC_RPC_URL = env.str("CHAIN_PUBLIC_RPC_URL", default="")
# The most transactions the relayer sends for one member in an hour (it pays their gas).
RELAY_PER_HOUR = env.int("RELAY_PER_HOUR", default=300)
# Demo members' keystores under var/ let a person click through without a wallet.
DEMO_KEYSTORES = env.bool("MEDCHAIN_DEMO_KEYSTORES", default=not PRODUCTION)
if PRODUCTION and DEMO_KEYSTORES:
    raise environ.ImproperlyConfigured(
        "MEDCHAIN_DEMO_KEYSTORES is refused in production: members sign in their own wallets"
    )
DEMO_KEYSTORE_DIR = VAR_DIR / "demo-keystores"

# Encrypted dataset uploads: ciphertext chunk and dataset size limits, and how long an
# unfinished upload is kept before its chunks are deleted.
DATASET_MAX_CHUNK_BYTES = env.int("DATASET_MAX_CHUNK_BYTES", default=4 * 1024 * 1024)
DATASET_MAX_BYTES = env.int("DATASET_MAX_BYTES", default=64 * 1024**3)
DATASET_UPLOAD_EXPIRY_HOURS = env.int("DATASET_UPLOAD_EXPIRY_HOURS", default=24)
# Ingest refuses DICOM files larger than this (docs/ingest.md); upload_dataset --max-file-bytes.
INGEST_MAX_FILE_BYTES = env.int("INGEST_MAX_FILE_BYTES", default=1024**3)
# The most ciphertext one member may have in open uploads at once (128 GiB: two of the largest).
DATASET_UPLOAD_QUOTA_BYTES = env.int("DATASET_UPLOAD_QUOTA_BYTES", default=128 * 1024**3)
# The most "decrypted"/"refused" reports one node may post per hour (they are self-reported).
DATASET_NODE_REPORTS_PER_HOUR = env.int("DATASET_NODE_REPORTS_PER_HOUR", default=60)
# How long a node's grant read from the chain is trusted before the next chunk re-reads it.
DATASET_GRANT_CHECK_SECONDS = env.int("DATASET_GRANT_CHECK_SECONDS", default=10)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.core.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "portal.core.schema.PortalAutoSchema",
    "EXCEPTION_HANDLER": "portal.core.apis.exception_handler",
    # Every list route (a ListAPIView) answers a page: docs/load.md, "Pagination".
    "DEFAULT_PAGINATION_CLASS": "portal.core.pagination.PortalPagination",
    # /health is polled by load balancers: enough for one every second, not for a flood.
    "DEFAULT_THROTTLE_RATES": {"anon": "60/min", "health": env.str("HEALTH_RATE", "120/min")},
    # How many reverse proxies of our own stand in front of the portal: the client address is
    # the one the last of them saw. 0 ignores X-Forwarded-For, which any client can write.
    "NUM_PROXIES": env.int("DJANGO_NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MedChain API",
    "DESCRIPTION": "Consortium membership, datasets, federated rounds and the leaderboard.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files (pinned in pyproject), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}

if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
