"""URLs and engines: which driver each URL scheme uses, the options of the engines the store creates,
and how an engine given by the app (Flask-SQLAlchemy's ``db.engine``) is adapted.

PostgreSQL and MySQL/MariaDB run every transaction at ``READ COMMITTED``: a claim's
``FOR UPDATE SKIP LOCKED`` then locks only the rows it takes (MySQL's default ``REPEATABLE READ``
would also lock the gaps between them, and block inserts), and each statement sees what other
transactions committed before it. SQLite runs with the driver's own transaction handling off: the
store sends ``BEGIN IMMEDIATE`` for every write, so a transaction takes the database's one write
lock before it reads, and never fails half-way on a lock another process took first.
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ...errors import ConfigurationError
from .. import SQL_SCHEMES

#: The driver of each family when a URL names none (``postgresql://`` -> ``postgresql+psycopg://``).
DEFAULT_DRIVERS = {"postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql", "sqlite": "pysqlite"}

#: Where each default driver comes from, for the error that says what to install.
_INSTALL = {
    "psycopg": ("psycopg", 'pip install "flask-asyncendpoints[postgresql]"'),
    "pymysql": ("pymysql", 'pip install "flask-asyncendpoints[mysql]"'),
}

#: URL schemes the SQL store takes (named in the parent package, which needs them without SQLAlchemy).
SCHEMES = SQL_SCHEMES

#: Seconds to wait for a new connection (PostgreSQL, MySQL): a server that drops packets rather than
#: refusing them must not hang a request for the operating system's minutes.
CONNECT_TIMEOUT = 10

#: SQLite: how long a transaction waits for another process's write lock before failing (seconds).
SQLITE_BUSY_TIMEOUT = 10.0

#: SQLite ``PRAGMA synchronous``: ``FULL`` makes every commit durable against power loss, as
#: PostgreSQL's default does; ``?synchronous=normal`` in the URL trades that for speed (a commit then
#: survives a crash of the process, not of the machine).
SQLITE_SYNCHRONOUS = "FULL"

#: Query options of ``sqlite:///`` URLs that the store reads itself (the rest go to the driver).
_SQLITE_OPTIONS = ("synchronous", "busy_timeout")

#: Engines made by :func:`create_engine_for`, which need no adapting.
_PREPARED: weakref.WeakSet[Any] = weakref.WeakSet()

POSTGRESQL = "postgresql"
MYSQL = "mysql"
SQLITE = "sqlite"


def family_of(dialect_name: str) -> str:
    """``postgresql``, ``mysql`` (MySQL and MariaDB) or ``sqlite``.

    :raises ConfigurationError: for any other database.
    """
    if dialect_name in ("mysql", "mariadb"):
        return MYSQL
    if dialect_name in (POSTGRESQL, SQLITE):
        return dialect_name
    raise ConfigurationError(
        f"The SQL store runs on PostgreSQL, MySQL/MariaDB and SQLite; this engine is for {dialect_name!r}."
    )


def normalize_url(url: str) -> tuple[str, dict[str, str]]:
    """The SQLAlchemy URL for an ``ASYNCENDPOINTS_STORE`` URL, and the store's own SQLite options.

    A URL without a driver gets its family's default driver (psycopg 3, PyMySQL, the standard
    library's sqlite3); ``postgres://`` is read as ``postgresql://``, and MySQL URLs talk
    ``utf8mb4`` unless they say otherwise.

    :raises ConfigurationError: for an in-memory SQLite database (each connection would see its own).
    """
    from sqlalchemy.engine import make_url

    scheme = urlsplit(url).scheme.lower()
    if scheme == "postgres":
        url = "postgresql" + url[len("postgres") :]
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError: the message says what is wrong
        raise ConfigurationError(f"ASYNCENDPOINTS_STORE is not a database URL SQLAlchemy can read: {exc}") from exc
    backend = parsed.get_backend_name()
    if "+" not in parsed.drivername and backend in DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=f"{backend}+{DEFAULT_DRIVERS[backend]}")
    options: dict[str, str] = {}
    if backend == SQLITE:
        if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
            raise ConfigurationError(
                "An in-memory SQLite database lives in one connection, so the store's threads and processes "
                "cannot share it. Use a file (sqlite:///jobs.db, or sqlite:////abs/path/jobs.db), or memory://."
            )
        options = {key: str(parsed.query[key]) for key in _SQLITE_OPTIONS if key in parsed.query}
        parsed = parsed.difference_update_query(_SQLITE_OPTIONS)
    elif family_of(backend) == MYSQL and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed.render_as_string(hide_password=False), options


def create_engine_for(url: str, **engine_options: Any) -> Any:
    """A new engine for a store URL, with the store's options (see the module docstring).

    :param url: an ``ASYNCENDPOINTS_STORE`` URL (``postgresql://…``, ``mysql://…``, ``sqlite:///…``).
    :param engine_options: more :func:`sqlalchemy.create_engine` options; they override the store's.
    :raises ConfigurationError: when SQLAlchemy or the driver is missing, or the URL cannot be used.
    """
    sqlalchemy = import_sqlalchemy()
    sa_url, sqlite_options = normalize_url(url)
    driver = sa_url.split("://", 1)[0].split("+", 1)[1]
    _require_driver(driver)
    family = family_of(sqlalchemy.engine.make_url(sa_url).get_backend_name())
    options: dict[str, Any] = {"pool_reset_on_return": None}
    if family == SQLITE:
        options.update(connect_args={"check_same_thread": False})
        options.update(engine_options)
        engine = sqlalchemy.create_engine(sa_url, **options)
        configure_sqlite(engine, sqlite_options)
        _PREPARED.add(engine)
        return engine
    # Every transaction of the store ends in an explicit COMMIT or ROLLBACK, so the pool's own
    # rollback when a connection comes back would be one more round trip for nothing.
    options.update(isolation_level="READ COMMITTED", connect_args={"connect_timeout": CONNECT_TIMEOUT})
    options.update(engine_options)
    engine = sqlalchemy.create_engine(sa_url, **options)
    _PREPARED.add(engine)
    return engine


def configure_sqlite(engine: Any, options: Mapping[str, str]) -> None:
    """Set up each new SQLite connection of ``engine``: WAL journal, busy timeout, ``synchronous``, and the
    driver's implicit transactions off (the store begins its own; see the module docstring).

    :raises ConfigurationError: for a ``synchronous`` or ``busy_timeout`` option that cannot be used.
    """
    from sqlalchemy import event

    synchronous = options.get("synchronous", SQLITE_SYNCHRONOUS).upper()
    if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigurationError(f"?synchronous={synchronous.lower()} is not one of off, normal, full or extra.")
    try:
        busy_ms = int(float(options.get("busy_timeout", SQLITE_BUSY_TIMEOUT)) * 1000)
    except ValueError:
        raise ConfigurationError(f"?busy_timeout={options['busy_timeout']} is not a number of seconds.") from None

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)


def adapt_engine(engine: Any) -> Any:
    """The engine the store uses for an engine the app gave it.

    PostgreSQL and MySQL: the same engine and pool, at ``READ COMMITTED`` for the store's
    connections only. SQLite: an engine of the store's own on the same file, set up as
    :func:`configure_sqlite` does, so the app's engine is left exactly as it was.

    :raises ConfigurationError: for a database the store does not support, or in-memory SQLite.
    """
    if engine in _PREPARED:
        return engine
    family = family_of(engine.dialect.name)
    if family == SQLITE:
        return create_engine_for(engine.url.render_as_string(hide_password=False))
    return engine.execution_options(isolation_level="READ COMMITTED")


def describe(engine: Any) -> str:
    """Where the engine connects, without the password: ``postgresql://postgres@db:5432/app``."""
    url = engine.url
    if family_of(engine.dialect.name) == SQLITE:
        return f"SQLite file {url.database}"
    return str(url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True))


def import_sqlalchemy() -> Any:
    """The ``sqlalchemy`` module, or :class:`ConfigurationError` saying how to install it."""
    try:
        import sqlalchemy
    except ImportError as exc:
        raise ConfigurationError(
            'The SQL store needs SQLAlchemy 2: pip install "flask-asyncendpoints[sql]" (or [postgresql], [mysql]).'
        ) from exc
    if int(sqlalchemy.__version__.split(".", 1)[0]) < 2:
        raise ConfigurationError(
            f"The SQL store needs SQLAlchemy 2.0 or later; {sqlalchemy.__version__} is installed: "
            'pip install -U "sqlalchemy>=2.0".'
        )
    return sqlalchemy


def _require_driver(driver: str) -> None:
    module, install = _INSTALL.get(driver, (None, None))
    if module is None:
        return  # the standard library's sqlite3, or a driver the app chose and installed itself
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(f"The {driver} database driver is not installed: {install}.") from exc
