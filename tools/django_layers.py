"""The public layers that need Django, as factories the matrix can name with ``--asgi-layer``.

channels-lite and channels-postgres read Django's settings and keep their messages in tables made
by their Django migrations: a layer's user has a project with both. Each factory here is that
project's minimum: settings made once per process (the suite's peers are processes of their own,
and build the layer from the same dotted path and config), the layer's app migrated, then the
layer. The layer's config stays its own, plus the one address the matrix fills in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

LITE_APP = "channels_lite"
POSTGRES_APP = "channels_postgres"

_lock = threading.Lock()
_migrated: set[str] = set()  # database aliases this process has migrated


def lite_layer(path: str, **config: Any) -> Any:
    """channels-lite's Django ORM layer on the SQLite file ``path`` (shared by the suite's peers)."""
    _ready({"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": {"timeout": 20}}, LITE_APP)
    from channels_lite.layers.core import SQLiteChannelLayer  # its models need the settings first

    layer: Callable[..., Any] = SQLiteChannelLayer  # untyped package
    return layer(database="default", **config)


def lite_aio_layer(path: str, **config: Any) -> Any:
    """channels-lite's aiosqlite layer on the SQLite file ``path``; Django only holds its settings
    and makes its table."""
    _ready({"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": {"timeout": 20}}, LITE_APP)
    from channels_lite.layers.aio import AIOSQLiteChannelLayer  # its models need the settings first

    layer: Callable[..., Any] = AIOSQLiteChannelLayer  # untyped package
    return layer(database="default", **config)


def postgres_layer(url: str, **config: Any) -> Any:
    """channels-postgres on the PostgreSQL at ``url`` (the layer takes Django's DATABASES entry)."""
    database = postgres_settings(url)
    # Its README has the database under the alias "channels_postgres" too: group_discard uses it.
    _ready(database, POSTGRES_APP, reachable_only=True, also_as=(POSTGRES_APP,))
    from channels_postgres.core import PostgresChannelLayer  # its models need the settings first

    return PostgresChannelLayer(**config, **database)


def postgres_settings(url: str) -> dict[str, Any]:
    """``postgresql://user[:password]@host:port/name`` as a Django DATABASES entry.

    With ``TIME_ZONE``, which the layer's README leaves out: the layer hands its config to Django's
    DatabaseWrapper raw, without the defaults Django fills into DATABASES, and under USE_TZ (Django's
    default) the wrapper then fails with KeyError 'TIME_ZONE' (docs/findings.md)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise ValueError(f"not a postgresql://user@host:port/name URL: {url!r}")
    return {"ENGINE": "django.db.backends.postgresql", "NAME": parts.path.lstrip("/") or "postgres",
            "USER": unquote(parts.username or "postgres"), "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname, "PORT": str(parts.port or 5432), "TIME_ZONE": None}


def _ready(database: dict[str, Any], app: str, reachable_only: bool = False, also_as: tuple[str, ...] = ()) -> None:
    """Settings for this process (the first database asked for is ``default``), and ``app``
    migrated there. A later, different database (the suite's unreachable address) is not
    migrated: the layer is built anyway, so what it does without its server is its own verdict."""
    with _lock:
        _configure(database, app, also_as)
        from django.conf import settings

        if settings.DATABASES["default"] != {**settings.DATABASES["default"], **database}:
            return
        if "default" not in _migrated and _in_a_thread(lambda: _migrate(app), swallow=reachable_only):
            _migrated.add("default")


def _configure(database: dict[str, Any], app: str, also_as: tuple[str, ...]) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(DATABASES={alias: database for alias in ("default", *also_as)}, INSTALLED_APPS=[app], USE_TZ=True,
                       DEFAULT_AUTO_FIELD="django.db.models.BigAutoField")
    django.setup()


def _migrate(app: str) -> None:
    from django.core.management import call_command
    from django.db import OperationalError, connections

    try:
        call_command("migrate", app, verbosity=0, interactive=False)
    except OperationalError:  # a peer migrating the same SQLite file at the same moment
        call_command("migrate", app, verbosity=0, interactive=False)
    finally:
        connections.close_all()


def _in_a_thread(work: Callable[[], None], swallow: bool) -> bool:
    """Run Django's synchronous ORM off the caller's thread: the suite builds layers inside a
    running event loop, where Django refuses synchronous database calls. Returns whether it
    worked; a failure is raised, unless ``swallow``."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="django-migrate")
    thread.start()
    thread.join()
    if failure and not swallow:
        raise failure[0]
    return not failure
