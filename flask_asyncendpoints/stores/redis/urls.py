"""Redis URLs: the clients they name, and how they are shown in messages without their passwords.

:func:`connect` picks a client factory by the URL's scheme from :data:`CLIENT_FACTORIES`; a new kind
of Redis deployment is one more factory there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qs, unquote, urlsplit

from ...errors import ConfigurationError, StoreError
from .connection import import_redis

if TYPE_CHECKING:
    import redis
    import redis.cluster

#: Connection options for the clients :meth:`RedisStore.from_url
#: <flask_asyncendpoints.stores.redis.RedisStore.from_url>` creates; the URL's query string and the
#: keyword arguments of ``from_url`` override them. Without a socket timeout a Redis that hangs
#: (rather than refusing connections) would hang every request and worker thread with it.
CLIENT_DEFAULTS: dict[str, Any] = {
    "socket_timeout": 10.0,
    "socket_connect_timeout": 5.0,
    "health_check_interval": 30,
}

#: The port of a Sentinel host given without one.
DEFAULT_SENTINEL_PORT = 26379

_SENTINEL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "health_check_interval": int,
    "sentinel_username": str,
    "sentinel_password": str,
}

#: A new client and what closes it: its own ``close`` first, then anything else it needed.
Connected: TypeAlias = tuple["redis.Redis | redis.cluster.RedisCluster", list[Callable[[], None]]]


def connect(url: str, **client_options: Any) -> Connected:
    """A new client for ``url`` (see :meth:`RedisStore.from_url
    <flask_asyncendpoints.stores.redis.RedisStore.from_url>` for the URLs), and its closers.

    :param url: the ``ASYNCENDPOINTS_STORE`` URL.
    :param client_options: more ``redis.Redis`` options (they override :data:`CLIENT_DEFAULTS`).
    :raises ConfigurationError: when the URL cannot be used or ``redis`` is not installed.
    """
    import_redis()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No automatic retry: redis-py would re-send a script whose reply was lost after it ran,
    # and a claim or complete run twice is not harmless. A failed call raises StoreError and
    # the worker (or the client of a 503) retries with a fresh call instead.
    options = {**CLIENT_DEFAULTS, "retry": Retry(NoBackoff(), 0), **client_options}
    factory = CLIENT_FACTORIES.get(urlsplit(url).scheme.lower())
    if factory is None:
        *others, last = (f"{scheme}://" for scheme in CLIENT_FACTORIES)
        raise ConfigurationError(f"{redact_url(url)!r} is not a Redis URL: use {', '.join(others)} or {last}.")
    try:
        return factory(url, options)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"ASYNCENDPOINTS_STORE={redact_url(url)!r} is not a valid Redis URL: {exc}") from exc


def _server_client(url: str, options: dict[str, Any]) -> Connected:
    """``redis://``, ``rediss://`` and ``unix://``: one server, read by ``redis.Redis.from_url``."""
    client = import_redis().Redis.from_url(url, **options)
    return client, [client.close]


def _sentinel_client(url: str, options: dict[str, Any]) -> Connected:
    """``redis+sentinel://``: the master of a service, as the Sentinels name it."""
    from redis.sentinel import Sentinel

    settings = parse_sentinel_url(url)
    connection = {**options, **settings.options}
    sentinel_kwargs = {key: value for key, value in connection.items() if key.startswith("socket_")}
    if settings.sentinel_username is not None:
        sentinel_kwargs["username"] = settings.sentinel_username
    if settings.sentinel_password is not None:
        sentinel_kwargs["password"] = settings.sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        settings.hosts,
        sentinel_kwargs=sentinel_kwargs,
        db=settings.db,
        username=settings.username,
        password=settings.password,
        **connection,
    )
    client = sentinel.master_for(settings.service_name)  # type: ignore[no-untyped-call]
    return client, [client.close, *(node.close for node in sentinel.sentinels)]


def _cluster_client(url: str, options: dict[str, Any]) -> Connected:
    """``redis+cluster://``: a Redis Cluster, found through any of the nodes named."""
    from redis.cluster import ClusterNode, RedisCluster

    settings = parse_cluster_url(url)
    exceptions = import_redis().exceptions
    try:
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in settings.hosts],  # type: ignore[no-untyped-call]
            username=settings.username,
            password=settings.password,
            **{**options, **settings.options},
        )
    except (exceptions.RedisError, exceptions.RedisClusterException) as exc:
        # redis-py's cluster client asks the nodes for the slot map as it is made.
        raise StoreError(
            f"Could not reach any node of the Redis Cluster at {redact_url(url)} ({exc}). Check that the "
            "cluster is up and that ASYNCENDPOINTS_STORE names some of its nodes."
        ) from exc
    return client, [client.close]


#: The client factory of each URL scheme :func:`connect` accepts: ``(url, options) -> (client, closers)``.
CLIENT_FACTORIES: dict[str, Callable[[str, dict[str, Any]], Connected]] = {
    "redis": _server_client,
    "rediss": _server_client,
    "unix": _server_client,
    "redis+sentinel": _sentinel_client,
    "redis+cluster": _cluster_client,
}


@dataclass(frozen=True)
class SentinelSettings:
    """What a ``redis+sentinel://`` URL says."""

    hosts: list[tuple[str, int]]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    #: Connection options from the query string (``socket_timeout`` and the like).
    options: dict[str, Any] = field(default_factory=dict)


def parse_sentinel_url(url: str) -> SentinelSettings:
    """Read ``redis+sentinel://[[user:]password@]host[:port][,host2[:port2]…]/service_name[/db][?options]``.

    :raises ValueError: when the URL is not one of these.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "redis+sentinel":
        raise ValueError(f"expected a redis+sentinel:// URL, got {parts.scheme}://")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        if ":" in userinfo:
            user, _, secret = userinfo.partition(":")
            username, password = (unquote(user) or None), unquote(secret)
        else:
            password = unquote(userinfo)
    hosts = [_host_port(item) for item in hostlist.split(",") if item]
    if not hosts:
        raise ValueError("no Sentinel host given (redis+sentinel://host:26379/service_name)")
    path = [unquote(segment) for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2:
        raise ValueError("the path must be /service_name or /service_name/db")
    db = int(path[1]) if len(path) == 2 else 0
    options: dict[str, Any] = {}
    sentinel_auth: dict[str, str] = {}
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        convert = _SENTINEL_OPTIONS.get(name)
        if convert is None:
            raise ValueError(f"unknown option {name!r}; known: {', '.join(_SENTINEL_OPTIONS)}")
        if name.startswith("sentinel_"):
            sentinel_auth[name] = values[-1]
        else:
            options[name] = convert(values[-1])
    return SentinelSettings(
        hosts=hosts,
        service_name=path[0],
        db=db,
        username=username,
        password=password,
        sentinel_username=sentinel_auth.get("sentinel_username"),
        sentinel_password=sentinel_auth.get("sentinel_password"),
        options=options,
    )


@dataclass(frozen=True)
class ClusterSettings:
    """What a ``redis+cluster://`` URL says."""

    hosts: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None
    #: Connection options from the query string (``socket_timeout`` and the like).
    options: dict[str, Any] = field(default_factory=dict)


_CLUSTER_OPTIONS: dict[str, Callable[[str], Any]] = {
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "health_check_interval": int,
    "read_from_replicas": lambda text: text.lower() in ("1", "true", "yes"),
}


def parse_cluster_url(url: str) -> ClusterSettings:
    """Read ``redis+cluster://[[user]:password@]host:port[,host2:port2…][/][?options]``.

    A cluster has one database, so the path may only be empty or ``/0``.

    :raises ValueError: when the URL is not one of these.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "redis+cluster":
        raise ValueError(f"expected a redis+cluster:// URL, got {parts.scheme}://")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        if colon:
            username, password = (unquote(user) or None), unquote(secret)
        else:
            password = unquote(user)
    hosts = [_host_port(item, default_port=6379) for item in hostlist.split(",") if item]
    if not hosts:
        raise ValueError("no cluster node given (redis+cluster://host:6379,host2:6379)")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has database 0 only: leave the path out")
    options: dict[str, Any] = {}
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        convert = _CLUSTER_OPTIONS.get(name)
        if convert is None:
            raise ValueError(f"unknown option {name!r}; known: {', '.join(_CLUSTER_OPTIONS)}")
        options[name] = convert(values[-1])
    return ClusterSettings(hosts=hosts, username=username, password=password, options=options)


def is_cluster_client(client: Any) -> bool:
    """Whether ``client`` is a ``redis.cluster.RedisCluster``."""
    try:
        from redis.cluster import RedisCluster
    except ImportError:
        return False
    return isinstance(client, RedisCluster)


def _host_port(item: str, *, default_port: int = DEFAULT_SENTINEL_PORT) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError(f"no host in {item!r}")
    return host, int(port) if port else default_port


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostlist = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostlist}" if colon else f"***@{hostlist}"
    query = "&".join(
        f"{pair.partition('=')[0]}=***" if pair.partition("=")[0].endswith("password") else pair
        for pair in parts.query.split("&")
        if pair
    )
    # Rebuilt by hand: urlunsplit would drop the empty netloc of unix:///path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def describe(client: Any) -> str:
    """Where ``client`` connects, for error messages (never with the password)."""
    if is_cluster_client(client):
        nodes = ",".join(f"{node.host}:{node.port}" for node in client.get_nodes()[:3])
        return f"the Redis Cluster of {nodes or repr(client)}"
    pool = getattr(client, "connection_pool", None)
    service = getattr(pool, "service_name", None)
    if service:
        return f"the master of Sentinel service {service!r}"
    options: Mapping[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
    if options.get("path"):
        return f"unix socket {options['path']} (db {options.get('db', 0)})"
    if "host" in options:
        return f"{options['host']}:{options.get('port', 6379)} (db {options.get('db', 0)})"
    return repr(client)
