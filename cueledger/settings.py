"""Django settings. Every value that differs between machines comes from the environment via cueledger.env.

The defaults are the embedded mode: one machine, no services (SQLite under var/, a filesystem broker, local media).
docs/configuration.md lists every variable.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from cueledger.env import env_bool, env_int, env_list, env_path, env_size, env_str, secret_key_from

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("CUELEDGER_VAR_DIR", BASE_DIR / "var")

SECRET_KEY = secret_key_from(VAR_DIR)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "cueledger",
    "provenance",
    "library",
    "generation",
]

MIDDLEWARE = [
    "cueledger.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cueledger.urls"
WSGI_APPLICATION = "cueledger.wsgi.application"

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


def _database(url: str) -> dict:
    try:
        config = dj_database_url.parse(url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL={url!r}: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # The web server and the worker write the same file: WAL lets readers run beside the writer, IMMEDIATE
        # takes the write lock at BEGIN so two writers queue (up to the timeout) instead of failing mid-transaction.
        # synchronous=FULL flushes the log at every commit, as PostgreSQL does by default: with NORMAL a power loss
        # can undo the last commits, and a ledger that forgot entries it had already shown would then fork.
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    return config


DATABASES = {"default": _database(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'cueledger.sqlite3'}"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "static")
MEDIA_ROOT = env_path("MEDIA_ROOT", VAR_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "cueledger.storage.AtomicFileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Uploads above this size go to a temporary file instead of memory; the cue size limit is checked separately.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

LOGIN_URL = "/api/auth/login/"
LOGIN_REDIRECT_URL = "/api/docs/"

# Rendering works in a private folder per job, emptied when the job ends or is retried.
CUELEDGER_SCRATCH_DIR = env_path("CUELEDGER_SCRATCH_DIR", VAR_DIR / "scratch")

# --- The catalog -------------------------------------------------------------------------------------------------
CUELEDGER_MAX_UPLOAD_BYTES = env_size("CUELEDGER_MAX_UPLOAD_BYTES", 5 * 1000**2)
CUELEDGER_MAX_DURATION_SECONDS = env_int("CUELEDGER_MAX_DURATION_SECONDS", 20 * 60, minimum=1)
# Reference recordings may be long and uncompressed: 20 minutes of 16-bit stereo WAV at 44.1 kHz are 212 MB.
CUELEDGER_MAX_REFERENCE_AUDIO_BYTES = env_size("CUELEDGER_MAX_REFERENCE_AUDIO_BYTES", 250 * 1000**2)

# --- Similarity checks -------------------------------------------------------------------------------------------
# Index files of the reference corpus, one per detector and corpus digest; rebuilt from the database when missing.
CUELEDGER_INDEX_DIR = env_path("CUELEDGER_INDEX_DIR", VAR_DIR / "indexes")
# After reference works are added, cues are re-checked this many seconds later, so that a burst of imports costs one
# re-check of the catalog instead of one per work.
CUELEDGER_RECHECK_DELAY_SECONDS = env_int("CUELEDGER_RECHECK_DELAY_SECONDS", 30)

# --- Provenance ----------------------------------------------------------------------------------------------------
# Content Credentials (C2PA): the certificate chain (leaf first, PEM) and its private key that sign manifests, and
# the trust anchors a reader needs. `manage.py c2pa dev-ca` writes a development CA and signing certificate to
# CUELEDGER_C2PA_DIR; production configures a chain issued by a CA that C2PA validators trust.
CUELEDGER_C2PA_DIR = env_path("CUELEDGER_C2PA_DIR", VAR_DIR / "c2pa")
CUELEDGER_C2PA_CERT_CHAIN = env_path("CUELEDGER_C2PA_CERT_CHAIN", CUELEDGER_C2PA_DIR / "signing-chain.pem")
CUELEDGER_C2PA_KEY = env_path("CUELEDGER_C2PA_KEY", CUELEDGER_C2PA_DIR / "signing-key.pem")
CUELEDGER_C2PA_TRUST_ANCHORS = env_path("CUELEDGER_C2PA_TRUST_ANCHORS", CUELEDGER_C2PA_DIR / "dev-ca.pem")

# The ledger's name in checkpoints (C2SP tlog-checkpoint "origin"): unique per deployment, stable forever.
CUELEDGER_LEDGER_ORIGIN = env_str("CUELEDGER_LEDGER_ORIGIN", "cueledger.localhost/ledger")
# Ed25519 signing keys, encrypted at rest with a passphrase taken from CUELEDGER_KEY_PASSPHRASE or, failing that, the
# file CUELEDGER_KEY_PASSPHRASE_FILE. In the embedded default that file is made once under var/; in production keep
# the passphrase off the machine's disk (a secret manager setting the variable).
CUELEDGER_KEY_DIR = env_path("CUELEDGER_KEY_DIR", VAR_DIR / "keys")
CUELEDGER_KEY_PASSPHRASE = env_str("CUELEDGER_KEY_PASSPHRASE", "")
CUELEDGER_KEY_PASSPHRASE_FILE = env_path("CUELEDGER_KEY_PASSPHRASE_FILE", VAR_DIR / "key-passphrase")

# A running job renews its lease with every progress report (every few seconds); a job silent this long is taken to
# be dead and another worker may take it over.
CUELEDGER_JOB_LEASE_SECONDS = env_int("CUELEDGER_JOB_LEASE_SECONDS", 120, minimum=1)

# --- API ---------------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "cueledger.api.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "cueledger.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # `?format=` selects an audio format on download endpoints, not a renderer.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cueledger API",
    "DESCRIPTION": (
        "A catalog of generated film-music cues with signed provenance. Authenticate with "
        "`Authorization: Token <key>` (tokens come from `manage.py create_user`) or a browser session. "
        'Errors are JSON objects `{"code": ..., "detail": ...}` with a stable `code`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    # Background jobs of every kind share one set of states.
    "ENUM_NAME_OVERRIDES": {
        "JobStateEnum": "library.models.ProcessingJob.State",
        "CueStatusEnum": "library.models.Cue.Status",
    },
}

# --- Background work -----------------------------------------------------------------------------------------------
# The default broker is kombu's filesystem transport: no server, messages are files under var/broker. It forgets a
# message once a worker has taken it, so unfinished jobs are re-enqueued from the database when a worker starts
# (library.services.job_resume_unfinished). With Redis or RabbitMQ, late acknowledgement brings them back instead.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
_BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _folder in ("queue", "processed", "control"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A message a worker took but never acknowledged (the worker died) goes back to the queue once it is older than
    # the visibility timeout, which must exceed the longest task (a 20-minute cue renders in well under a minute).
    # kombu looks for such messages every restore interval, but by default only on every tenth look: here on each.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 600, minimum=1),
        "unacked_restore_interval": env_int("CELERY_RESTORE_INTERVAL", 10, minimum=1),
        "unacked_restore_throttle": 1,
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
