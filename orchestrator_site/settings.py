"""Settings for the Orchestrator: one module, everything read from the environment.

See README.md ("Configuration") for every variable. A bad value raises ImproperlyConfigured
naming the variable, so the service refuses to start rather than failing mid-run.
"""

from __future__ import annotations

from pathlib import Path

from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

from orchestrator_site.channel_layers import channel_layers
from orchestrator_site.embedded_db import embedded_database_settings
from orchestrator_site.env import (
    database_from_url,
    env_bool,
    env_choice,
    env_float,
    env_header,
    env_hosts,
    env_int,
    env_json_object,
    env_origin,
    env_origins,
    env_paths,
    env_str,
    env_url,
    env_urls,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ORCHESTRATOR_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", default=False)
# A random-per-checkout key would log everyone out on restart; a fixed dev key is only
# acceptable because the service binds to localhost by default. Set SECRET_KEY elsewhere.
SECRET_KEY = env_str("SECRET_KEY") or "dev-only-insecure-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = [h for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o]

INSTALLED_APPS = [
    "daphne",
    "runs",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "django_htmx",
    "ninja",  # the API docs page then serves Swagger UI from ninja's own static files, no CDN
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # outside the query check, so its 400 has the policy too
    "orchestrator_site.hardening.CleanQueryMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "orchestrator_site.urls"
ASGI_APPLICATION = "orchestrator_site.asgi.application"

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
                "orchestrator_site.hardening.csp_nonce",
            ],
        },
    },
]

# Without DATABASE_URL, a PostgreSQL from a pip wheel, kept under var/ (see embedded_db).
EMBEDDED_DATABASE = not env_str("DATABASE_URL")
if EMBEDDED_DATABASE:
    # Started on the first connection, not here: most commands never touch the database.
    DATABASES = {"default": embedded_database_settings(VAR_DIR / "pgdata")}
else:
    DATABASES = {"default": database_from_url("DATABASE_URL", env_str("DATABASE_URL"))}
# Workers talk to the database many times a second; reconnecting each time would dominate.
DATABASES["default"]["CONN_MAX_AGE"] = 300
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
CHANNEL_LAYERS = channel_layers(REDIS_URL)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/workspace/"
LOGOUT_REDIRECT_URL = "/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "runs": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
        # Every 500 with its traceback (the error page says it is in the server's log);
        # ERROR only, so 404s and 403s stay out of it.
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}

# --- The Orchestrator itself -------------------------------------------------------------
# The model every agent of a run uses, as provider/model.
ORCHESTRATOR_MODEL = env_str("ORCHESTRATOR_MODEL", "llama-swap/qwen3.6-35b-a3b-mxfp4")
# Overrides the selected provider's base URL (e.g. a llama-swap on another port); several
# comma-separated URLs are servers of the same model, each turn placed on one of them.
ORCHESTRATOR_BASE_URL = env_urls("ORCHESTRATOR_BASE_URL")
# Extra or overridden providers: {"name": {"base_url": "...", "slots": 2, ...}}.
ORCHESTRATOR_PROVIDERS = env_json_object("ORCHESTRATOR_PROVIDERS")
# Concurrent requests the model server takes (llama.cpp --parallel); 0 = ask the server
# (llama.cpp's /props total_slots), else the provider's own setting.
ORCHESTRATOR_SLOTS = env_int("ORCHESTRATOR_SLOTS", 0)
# How long a model turn keeps retrying a server that is down, restarting, loading a model
# (llama-swap waits up to 120 s for one) or busy, with backoff, before the step fails.
ORCHESTRATOR_RETRY_SECONDS = env_float("ORCHESTRATOR_RETRY_SECONDS", 180.0)
# An agent whose tool calls finish within this keeps its model slot for its next turn: the
# server's cache then holds exactly its conversation (0 gives the slot back for every tool run).
ORCHESTRATOR_KEEP_SLOT_SECONDS = env_float("ORCHESTRATOR_KEEP_SLOT_SECONDS", 0.5, minimum=0.0)
# Attempts per step: an attempt whose worker died (or lost the database) is resumed by another
# until this many have started; then the step fails, naming why the last one ended.
ORCHESTRATOR_MAX_ATTEMPTS = env_int("ORCHESTRATOR_MAX_ATTEMPTS", 3, minimum=1)
# Targets must lie under one of these directories; an entry may hold `{user}`
# (runs/targets.py).
ORCHESTRATOR_ALLOWED_ROOTS = env_paths(
    "ORCHESTRATOR_ALLOWED_ROOTS", [Path.home().resolve()], user_part=True
)
ORCHESTRATOR_CHAT_WEBHOOK = env_url("ORCHESTRATOR_CHAT_WEBHOOK")
# Where people reach this server (scheme, host, port): the MCP App frames the pane from here.
ORCHESTRATOR_PUBLIC_URL = env_origin("ORCHESTRATOR_PUBLIC_URL", "http://127.0.0.1:8000")
# A worker that stops heart-beating loses its steps after this long.
ORCHESTRATOR_LEASE_SECONDS = env_float("ORCHESTRATOR_LEASE_SECONDS", 15.0, minimum=1.0)
# The worker re-reads the database this often even when no wake-up message arrives.
ORCHESTRATOR_SWEEP_SECONDS = env_float("ORCHESTRATOR_SWEEP_SECONDS", 2.0, minimum=0.1)
# How many steps one worker process runs at once (each mostly waits on the model).
ORCHESTRATOR_WORKER_CONCURRENCY = env_int("ORCHESTRATOR_WORKER_CONCURRENCY", 16, minimum=1)
# A model message asking for more tool calls than this gets the rest refused (with a reason).
ORCHESTRATOR_MAX_TOOL_CALLS_PER_MESSAGE = env_int(
    "ORCHESTRATOR_MAX_TOOL_CALLS_PER_MESSAGE", 32, minimum=1
)
# A step attempt storing more events than this fails with the reason (a runaway stream).
ORCHESTRATOR_MAX_EVENTS_PER_STEP = env_int("ORCHESTRATOR_MAX_EVENTS_PER_STEP", 20_000, minimum=10)
# Runs one user may have running at once; more wait as `pending`, with the reason shown, and
# start in launch order as theirs end. 0 = no cap. Runs without an owner (launched from the
# CLI without --user) are the operator's and are not capped.
ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = env_int("ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER", 4)
# The web tools (runs/engine/web): a SearXNG-compatible JSON search endpoint; unset, no run
# may use the web. Hosts listed in ALLOW_HOSTS may be fetched even at private or loopback
# addresses (an intranet docs server); every other address is checked (docs/architecture.md).
ORCHESTRATOR_WEB_SEARCH_URL = env_url("ORCHESTRATOR_WEB_SEARCH_URL")
ORCHESTRATOR_WEB_ALLOW_HOSTS = env_hosts("ORCHESTRATOR_WEB_ALLOW_HOSTS")
# Scripted demo model knobs (only used when the model is demo/scripted).
ORCHESTRATOR_DEMO_TOKEN_RATE = env_float("ORCHESTRATOR_DEMO_TOKEN_RATE", 80.0)
# Prompt tokens a second the demo model reads (the part not in its cache), streaming its
# progress as llama.cpp does: slow enough that a first prompt shows "reading the prompt". 0 =
# at once.
ORCHESTRATOR_DEMO_PREFILL_RATE = env_float("ORCHESTRATOR_DEMO_PREFILL_RATE", 300.0)
# Files each demo specialist reads beyond its script before answering, as a real model that
# keeps reading until its caps stop it; try 24 to see what --fast cuts. 0 = the script only.
ORCHESTRATOR_DEMO_EXPLORE = env_int("ORCHESTRATOR_DEMO_EXPLORE", 0)

# --- The pane's WebSocket: who may open it and what one socket may cost ------------------
# (runs/socket_limits.py holds the per-socket limits; docs/architecture.md "The live pane")
# Pages on other origins allowed to frame the pane (`?embed=1`), to exchange its postMessage
# events and to open a run's socket: space-separated exact origins, scheme, host and port.
# The site itself is always allowed (runs/embedding.py; docs/embedding.md).
ORCHESTRATOR_EMBED_ORIGINS = env_origins("ORCHESTRATOR_EMBED_ORIGINS")
# Pane sockets one user may hold open at once in one server process; one more is closed
# with the reason. Each browser tab showing a run holds one.
ORCHESTRATOR_MAX_SOCKETS_PER_USER = env_int("ORCHESTRATOR_MAX_SOCKETS_PER_USER", 16, minimum=1)
# --- end of the pane's WebSocket ---------------------------------------------------------
# --- Who may analyse what, and running behind TLS (issue 17) ----------------------------
# Directories every signed-in user may analyse (a team that shares everything, stated);
# each must lie inside ORCHESTRATOR_ALLOWED_ROOTS. Default none: see runs/targets.py.
ORCHESTRATOR_SHARED_ROOTS = env_paths("ORCHESTRATOR_SHARED_ROOTS", [])
# Runs one user may have waiting (pending) at once; a launch or retry past it is refused with
# a sentence. 0 = no cap. Runs without an owner (the CLI's operator) are not capped.
ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = env_int("ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER", 20)
# Behind a TLS-terminating proxy: cookies only over HTTPS, HSTS, and the header by which the
# proxy says the browser's request was HTTPS (without it Django sees plain HTTP).
SECURE_COOKIES = env_bool("SECURE_COOKIES", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_COOKIES
# A host on another site (not another port of this host) frames the pane only if the session
# and CSRF cookies say SameSite=None, which browsers accept only with Secure (README,
# "Embedding in a host app"); same-site hosts work with the default Lax.
ORCHESTRATOR_EMBED_COOKIES = env_choice(
    "ORCHESTRATOR_EMBED_COOKIES", ("same-site", "cross-site"), "same-site"
)
if ORCHESTRATOR_EMBED_COOKIES == "cross-site" and not SECURE_COOKIES:
    raise ImproperlyConfigured(
        "ORCHESTRATOR_EMBED_COOKIES=cross-site needs SECURE_COOKIES=true: browsers drop"
        " SameSite=None cookies that are not Secure, and Secure cookies need HTTPS"
    )
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = (
    "None" if ORCHESTRATOR_EMBED_COOKIES == "cross-site" else "Lax"
)
# Every page refuses frames (X-Frame-Options and frame-ancestors 'self' below) except the
# embedded pane, whose view allows the site and ORCHESTRATOR_EMBED_ORIGINS (runs/embedding.py).
X_FRAME_OPTIONS = "DENY"
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_PROXY_SSL_HEADER = env_header("SECURE_PROXY_SSL_HEADER")
# Content-Security-Policy on every response (django-csp). Scripts only from this site or
# with the page's nonce, never inline handlers; styles may be inline (the pane's bars are
# sized with style attributes, and htmx adds its indicator style).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'self'"],
    }
}
