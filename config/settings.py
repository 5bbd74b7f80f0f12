"""The one settings module. Production differs from development only by environment.

See README.md ("Configuration") for every variable.
"""
import os
from pathlib import Path

from django.utils.translation import gettext_lazy as _

from config import env

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env.get_bool("DJANGO_DEBUG", False)
SECRET_KEY = env.get("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE).")
    SECRET_KEY = "insecure-development-key-only-used-with-DJANGO_DEBUG=1"  # noqa: S105

# Tenants are resolved from the host by django-tenants; ALLOWED_HOSTS only guards the
# Host header's shape. TENANT_BASE_DOMAIN is the suffix new tenants get by default.
TENANT_BASE_DOMAIN = env.get("MIMAMORI_BASE_DOMAIN", "localhost")
# The Domain table is the real allow-list: an unknown host gets 404 from TenantMiddleware.
ALLOWED_HOSTS = env.get_list("DJANGO_ALLOWED_HOSTS", ["*"])
PUBLIC_HOST = env.get("MIMAMORI_PUBLIC_HOST", TENANT_BASE_DOMAIN)
SITE_PORT = env.get("MIMAMORI_SITE_PORT", "")  # shown in links in development only
SITE_SCHEME = env.get("MIMAMORI_SITE_SCHEME", "http" if DEBUG else "https")

SHARED_APPS = [
    "django_tenants",
    "tenants",
    "tenants.accounts",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "tenants.accounts",
    "notifications",
    "watch",
    "outreach",
]
INSTALLED_APPS = [*SHARED_APPS, *[app for app in TENANT_APPS if app not in SHARED_APPS], "config"]
INSTALLED_APPS.insert(INSTALLED_APPS.index("django.contrib.staticfiles"), "channels")

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"
SHOW_PUBLIC_IF_NO_TENANT_FOUND = False
# One SET search_path per request or task instead of one per query (measured: 11 of 22
# statements of a contact submission were SETs).
TENANT_LIMIT_SET_CALLS = True

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "accounts:login"

MIDDLEWARE = [
    "config.health.HealthCheckMiddleware",
    "tenants.middleware.TenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "config.input.InputPolicyMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.accounts.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "watch.context_processors.disaster_sharing",
                "outreach.context_processors.navigation",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"

DATABASE_URL = env.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/mimamori")
DATABASES = {
    "default": {
        **env.database_from_url(DATABASE_URL, connect_timeout=env.get_int("DATABASE_CONNECT_TIMEOUT", 2)),
        # django-tenants' backend, reading out-of-range dates of odd rows leniently (config/db/base.py).
        "ENGINE": "config.db",
        "CONN_MAX_AGE": env.get_int("DATABASE_CONN_MAX_AGE", 0),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env.get("DATABASE_TEST_NAME", "test_mimamori")},
    }
}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# With the database unreachable every path (Django's and the edge's) answers 503 with this Retry-After.
OUTAGE_RETRY_AFTER_SECONDS = env.get_int("OUTAGE_RETRY_AFTER_SECONDS", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
if env.get("PYTEST_XDIST_WORKER") and not env.get("MIMAMORI_TEST_WORKER_REDIS"):
    # The test command runs the suite in several processes (pytest-xdist), each with a test
    # database of its own; this gives each a Redis database of its own too (channel groups,
    # the broker's queues and cache keys carry no worker id). Processes a test starts are
    # given this URL and keep it.
    REDIS_URL = env.redis_url_with_db(REDIS_URL, 1 + int(env.get("PYTEST_XDIST_WORKER").removeprefix("gw")))
    os.environ["MIMAMORI_TEST_WORKER_REDIS"] = REDIS_URL
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        # Cache keys carry the schema name, so one tenant never reads another's entries.
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        "KEY_PREFIX": "mimamori",
        # An unreachable Redis is an error in a second, not a hung request (see the sign-in throttle).
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [REDIS_URL],
            "prefix": "mimamori:asgi",
            "capacity": env.get_int("CHANNEL_CAPACITY", 1000),
            "expiry": 30,
        },
    }
}

# Celery: the broker is Redis; the database, not Redis, is the record of work.
CELERY_BROKER_URL = env.get("CELERY_BROKER_URL") or env.celery_broker_url(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Urgent deliveries go to the "urgent" queue, which `start` gives a worker of its own.
CELERY_TASK_ROUTES = ["notifications.tasks.route_delivery"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.get_int("CELERY_VISIBILITY_TIMEOUT", 300),
    # A request enqueueing after its commit waits at most a few seconds for a broker that
    # does not answer (tenants.tasks.enqueue logs it; the sweeps redo the work).
    "socket_connect_timeout": 1, "socket_timeout": 5,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env.get_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = "Asia/Tokyo"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "config.api.AutoSchema",  # every refusal documented, one error body
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "config.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mimamori API",
    "DESCRIPTION": "Watch-over platform: residents, contacts, devices. Served per tenant host.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "AreaKindEnum": "watch.models.Area.Kind",
        "DeviceKindEnum": "watch.models.Device.Kind",
    },
}

# Broker for the devices' MQTT transport (manage.py mqtt_listener); mqtts:// for TLS,
# credentials in the URL. Empty: no MQTT listener is started by `manage.py start`.
MQTT_URL = env.get("MQTT_URL", "")

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sign-in throttling: attempts are counted before the password is checked; after this
# many failures for one account (or, much higher, from one client address: a city office
# signs in from one address) within the window, further attempts are refused.
LOGIN_FAILURE_LIMIT = env.get_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_ADDRESS_FAILURE_LIMIT = env.get_int("LOGIN_ADDRESS_FAILURE_LIMIT", 100)
LOGIN_FAILURE_WINDOW = env.get_int("LOGIN_FAILURE_WINDOW", 900)
# Password-reset requests: per entered email address and per client address, per window.
PASSWORD_RESET_LIMIT = env.get_int("PASSWORD_RESET_LIMIT", 3)
PASSWORD_RESET_ADDRESS_LIMIT = env.get_int("PASSWORD_RESET_ADDRESS_LIMIT", 20)
PASSWORD_RESET_WINDOW = env.get_int("PASSWORD_RESET_WINDOW", 3600)
# The reverse proxies (CIDRs) whose X-Forwarded-For is believed, read from the right;
# a request from any other peer is the peer's own, whatever header it carries.
TRUSTED_PROXIES = env.get_list("TRUSTED_PROXIES", [])
# API tokens (tenants.accounts.models.ApiToken) end after this many days.
API_TOKEN_TTL_DAYS = env.get_int("API_TOKEN_TTL_DAYS", 30)
INVITATION_TTL_HOURS = env.get_int("INVITATION_TTL_HOURS", 72)
PASSWORD_RESET_TIMEOUT = 60 * 60 * 2

# Sessions live in each tenant's schema; cookies are host-only (no *_COOKIE_DOMAIN),
# so a session of one tenant is neither sent to nor found on another tenant's host.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_NAME = "mimamori_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 60 * 60 * 12
CSRF_COOKIE_NAME = "mimamori_csrftoken"
SECURE_COOKIES = env.get_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
CSRF_TRUSTED_ORIGINS = env.get_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
SECURE_SSL_REDIRECT = env.get_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env.get_int("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.get_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env.get_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
BEHIND_TLS_PROXY = env.get_bool("DJANGO_BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# These and the policy below are sent on every answer, the edge's too, by
# config.http.SecurityHeaders (Django's middleware above stays for its deploy checks).
# Scripts only from our static files; the json_script data blocks are not run.
CONTENT_SECURITY_POLICY = env.get(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
)
# Request bodies are refused (413) above these sizes before they are read (config.http.BodyLimit);
# a tenant's residents import takes a file of up to 5 MB (watch/views_import.py).
REQUEST_BODY_MAX_BYTES = env.get_int("REQUEST_BODY_MAX_BYTES", 1024 * 1024)
IMPORT_BODY_MAX_BYTES = env.get_int("IMPORT_BODY_MAX_BYTES", 6 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_BODY_MAX_BYTES

LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", _("Japanese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "mimamori_language"
USE_I18N = True
TIME_ZONE = "Asia/Tokyo"
USE_TZ = True

STATIC_URL = "static/"
# With DJANGO_STATIC_MANIFEST=1 (containers run collectstatic at build time) static files
# are served hashed and compressed from STATIC_ROOT; otherwise straight from the source.
STATIC_MANIFEST = env.get_bool("DJANGO_STATIC_MANIFEST", False)
STATIC_ROOT = env.get("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")) if STATIC_MANIFEST else None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# Django's SMTP backend, telling a lost answer after DATA from a refusal (notifications.mail).
# In development (DJANGO_DEBUG=1) with no EMAIL_HOST set, every email is kept as a file
# under .data/mail/ instead (notifications.mail.DevelopmentFileBackend; `start` prints where).
EMAIL_BACKEND = env.get(
    "EMAIL_BACKEND",
    "notifications.mail.DevelopmentFileBackend" if DEBUG and not env.get("EMAIL_HOST")
    else "notifications.mail.EmailBackend",
)
EMAIL_FILE_PATH = env.get("EMAIL_FILE_PATH", str(Path(env.get("MIMAMORI_DATA_DIR", str(BASE_DIR / ".data"))) / "mail"))
EMAIL_HOST = env.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env.get_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.get_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env.get("DEFAULT_FROM_EMAIL", "mimamori <noreply@mimamori.invalid>")

LOG_LEVEL = env.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"tenant": {"()": "config.logging.TenantFilter"}},
    "formatters": {"json": {"()": "config.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["tenant"], "formatter": "json"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django_tenants": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
    },
}

# Notification providers ------------------------------------------------------------
# A channel whose credentials are empty is unavailable and skipped, never an error.
# The *_API_BASE settings exist so that tests (and staging) point the real client
# libraries at a local fake server.
LINE_CHANNEL_ACCESS_TOKEN = env.get("LINE_CHANNEL_ACCESS_TOKEN", "")
LINE_CHANNEL_SECRET = env.get("LINE_CHANNEL_SECRET", "")
LINE_API_BASE = env.get("LINE_API_BASE", "https://api.line.me")
# LINE's account-link dialog (access.line.me); tests and the demo point it at the fake server.
LINE_ACCESS_BASE = env.get("LINE_ACCESS_BASE", "https://access.line.me")
# The official account's add-friend address, printed as a QR code on residents' link sheets.
LINE_ADD_FRIEND_URL = env.get("LINE_ADD_FRIEND_URL", "")
TWILIO_ACCOUNT_SID = env.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = env.get("TWILIO_AUTH_TOKEN", "")
TWILIO_FROM_NUMBER = env.get("TWILIO_FROM_NUMBER", "")
TWILIO_API_BASE = env.get("TWILIO_API_BASE", "https://api.twilio.com")
VAPID_PRIVATE_KEY = env.get("VAPID_PRIVATE_KEY", "")
VAPID_PUBLIC_KEY = env.get("VAPID_PUBLIC_KEY", "")
VAPID_SUBJECT = env.get("VAPID_SUBJECT", "")  # mailto:... of the operator
# Push endpoints are user input: the server posts only to real push services.
WEBPUSH_ENDPOINT_PATTERN = env.get(
    "WEBPUSH_ENDPOINT_PATTERN",
    r"^https://(fcm\.googleapis\.com|updates\.push\.services\.mozilla\.com|[a-z0-9-]+\.push\.apple\.com"
    r"|[a-z0-9.-]+\.notify\.windows\.com)/",
)
# Every provider call gives up after this many seconds (connect + answer).
NOTIFICATION_PROVIDER_TIMEOUT = float(env.get("NOTIFICATION_PROVIDER_TIMEOUT", "10"))
# Urgent notifications give a provider this long, then move to the person's next channel.
NOTIFICATION_URGENT_TIMEOUT = float(env.get("NOTIFICATION_URGENT_TIMEOUT", "5"))
# SMTP: the wait for the answer to the end of DATA (the server may be checking the
# message). Past it the email may have been accepted: it is not sent again.
NOTIFICATION_EMAIL_DATA_TIMEOUT = float(env.get("NOTIFICATION_EMAIL_DATA_TIMEOUT", "60"))
# A provider's server that did not answer three times running in a worker process is
# not called from it for this long (notifications.delivery.Breaker).
NOTIFICATION_PROVIDER_PAUSE = float(env.get("NOTIFICATION_PROVIDER_PAUSE", "30"))
# Waits (seconds) before the 2nd, 3rd, ... attempt on one channel after a transient
# failure (timeout, connection error, 5xx, 429); after the last, the next channel.
NOTIFICATION_RETRY_DELAYS = [int(s) for s in env.get_list("NOTIFICATION_RETRY_DELAYS", ["10", "30", "90"])]
# A delivery run holds its notification this long; a run that died is re-driven by
# the sweep (notifications.tasks.sweep_deliveries) once it has passed.
NOTIFICATION_LEASE_SECONDS = env.get_int("NOTIFICATION_LEASE_SECONDS", 120)
# End of notification providers -----------------------------------------------------
