"""Settings of the drop-in test project; the channel layer comes from the environment.

``ASGI_DROPIN_BACKEND`` is the dotted path of the layer class and ``ASGI_DROPIN_CONFIG`` its
CONFIG as JSON, so a test can start daphne or runworker subprocesses on any layer without
writing a settings file per layer.
"""

import json
import os

BACKEND_ENV = "ASGI_DROPIN_BACKEND"
CONFIG_ENV = "ASGI_DROPIN_CONFIG"

SECRET_KEY = "asgi-conformance-dropin-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True

INSTALLED_APPS = [
    "channels",  # runworker
    "tests.django_app",  # the announce management command
]
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
ROOT_URLCONF = "tests.django_app.urls"
ASGI_APPLICATION = "tests.django_app.asgi.application"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": os.environ.get(BACKEND_ENV, "reference_layers.inmemory.InMemoryChannelLayer"),
        "CONFIG": json.loads(os.environ.get(CONFIG_ENV) or "{}"),
    }
}

# The servers' stderr goes to a log file the tests show when something fails.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.channels": {"handlers": ["stderr"], "level": "INFO"},
        "daphne": {"handlers": ["stderr"], "level": "WARNING"},
    },
}
