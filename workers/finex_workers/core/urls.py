"""Service URLs as they may be shown: with the password replaced, and checked before use.

Every message that names REDIS_URL or DATABASE_URL prints the URL through :func:`redact`, so a
log line or a terminal never shows a password, whatever path reported the problem.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: What replaces a password.
MASK = "***"

REDIS_SCHEMES = ("redis", "rediss", "unix")
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
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostinfo}"))


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why this URL cannot be used (scheme, host, port), or None when it looks usable.

    A libpq keyword string has no scheme; it is left to the driver (None).
    """
    if "://" not in url:
        return None if schemes == POSTGRES_SCHEMES else f"is not a URL (use {schemes[0]}://...)"
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
