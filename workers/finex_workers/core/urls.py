"""Service URLs as they may be shown: with the password replaced, and checked before use.

Every message that names REDIS_URL or DATABASE_URL prints the URL through :func:`redact`, so a
log line or a terminal never shows a password, whatever path reported the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

#: What replaces a password.
MASK = "***"

#: ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``: Redis
#: behind Sentinel. The password (and user) are the Redis master's; a ``?sentinel_password=``
#: query gives the Sentinels' own, when they require one.
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
REDIS_SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names: where the Sentinels are and which master."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The Sentinel target of a ``redis+sentinel://`` URL; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"scheme is {parts.scheme}://, not {SENTINEL_SCHEME}://")
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    sentinels = []
    for item in hostinfo.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError(f"has an empty Sentinel host in {hostinfo!r}")
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"has Sentinel port {port!r} (allowed: 1..65535)")
        sentinels.append((host, int(port) if port else SENTINEL_PORT))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("needs the master's service name in the path: /<service>[/<db>]")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"has database {path[1]!r} (a number, e.g. /mymaster/0)")
    query = parse_qs(parts.query)
    return SentinelTarget(
        sentinels=tuple(sentinels),
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(user) or None,
        password=unquote(password) or None,
        sentinel_password=next(iter(query.get("sentinel_password", [])), None),
    )


POSTGRES_SCHEMES = ("postgresql", "postgres")


def redact(url: str) -> str:
    """The URL with its password (if any) masked; text that is not a URL comes back as is.

    A libpq keyword string (``host=... password=...``) has its password value masked too.
    """
    if "://" not in url:
        return " ".join(
            f"password={MASK}" if part.startswith("password=") else part for part in url.split()
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "sentinel_password=" in parts.query:
        query = "&".join(
            f"sentinel_password={MASK}" if q.startswith("sentinel_password=") else q
            for q in parts.query.split("&")
        )
        parts = parts._replace(query=query)
    if parts.password is None:
        return urlunsplit(parts)
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostinfo}"))


def with_params(url: str, params: Mapping[str, str]) -> str:
    """A PostgreSQL URL or libpq keyword string with more connection parameters.

    A parameter the string sets already is kept as the user wrote it, and ours is not added,
    even when it is empty: ``?options=`` in DATABASE_URL sends no ``options`` at all.
    """
    if "://" in url:
        parts = urlsplit(url)
        given = parse_qs(parts.query, keep_blank_values=True)
        extra = [f"{k}={quote(v, safe='')}" for k, v in params.items() if k not in given]
        query = "&".join(q for q in (parts.query, *extra) if q)
        return urlunsplit(parts._replace(query=query))
    given_words = {w.split("=", 1)[0].strip() for w in url.split() if "=" in w}
    extra = [
        "{}='{}'".format(k, v.replace("\\", "\\\\").replace("'", "\\'"))
        for k, v in params.items()
        if k not in given_words
    ]
    return " ".join([url, *extra])


def _sentinel_problem(url: str) -> str:
    try:
        parse_sentinel_url(url)
    except ValueError as exc:
        return str(exc)
    return ""


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:  # noqa: PLR0911 - one return per problem
    """Why this URL cannot be used (scheme, host, port), or None when it looks usable.

    A libpq keyword string has no scheme; it is left to the driver (None).
    """
    if "://" not in url:
        return None if schemes == POSTGRES_SCHEMES else f"is not a URL (use {schemes[0]}://...)"
    if url.startswith(f"{SENTINEL_SCHEME}://") and SENTINEL_SCHEME in schemes:
        return _sentinel_problem(url) or None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        if "port" in str(exc).lower():
            return "has a port that is not a number in 1..65535"
        return f"is not a valid URL ({exc})"
    if parts.scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        return f"has scheme {parts.scheme}:// (allowed: {allowed})"
    if port is not None and not 1 <= port <= 65535:
        return f"has port {port} (allowed: 1..65535)"
    return None
