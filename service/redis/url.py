"""`parse_redis_url`: which Redis deployment `REDIS_URL` names (one server, a Cluster, or a master
found through Sentinel), checked before anything connects. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_ALL = ", ".join(f"{scheme}://" for scheme in SINGLE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES)


class RedisShape(StrEnum):
    SINGLE = "single"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """`url` as given, for a single server (redis-py reads it); for Cluster and Sentinel the
    parts redis-py's constructors take: seed nodes (or sentinels), the master's name, db and
    credentials (of the data nodes; sentinels are asked without them)."""

    shape: RedisShape
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    is_tls: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """The deployment `url` names; ValueError with a one-line reason when it names none."""
    scheme, separator, _ = url.partition("://")
    if not separator or scheme not in SINGLE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        raise ValueError(f"must start with one of {_ALL}")
    if scheme in SINGLE_SCHEMES:
        return RedisTarget(RedisShape.SINGLE, url)
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"{scheme}:// takes no query string or fragment")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    segments = [segment for segment in parts.path.split("/") if segment]
    shape = RedisShape.CLUSTER if scheme in CLUSTER_SCHEMES else RedisShape.SENTINEL
    if shape is RedisShape.CLUSTER:
        if segments not in ([], ["0"]):
            raise ValueError("a Redis Cluster has database 0 only: end the URL after the nodes")
        master_name, db = "", 0
    else:
        if not segments or len(segments) > 2:
            raise ValueError("name the master after the sentinels: redis+sentinel://h:p,h:p/name")
        master_name = unquote(segments[0])
        db = _number(segments[1], "the database") if len(segments) == 2 else 0
    return RedisTarget(
        shape,
        url,
        nodes=tuple(_node(node) for node in hosts.split(",")),
        master_name=master_name,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        is_tls=scheme.startswith("rediss"),
    )


def _node(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not host:
        raise ValueError(f"{text!r} is not host:port")
    return host.strip("[]"), _number(port, f"the port in {text!r}", upper=65535)


def _number(text: str, what: str, *, upper: int | None = None) -> int:
    if not text.isdigit() or (upper is not None and not 0 < int(text) <= upper):
        raise ValueError(f"{what} is not a number{f' from 1 to {upper}' if upper else ''}")
    return int(text)
