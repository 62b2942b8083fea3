"""What went wrong with a URL taken from a Secret, said without any of its text.

Status and Events are readable by anyone who may `get` the pool, and an exception raised
while parsing or using a URL may quote it: urllib's port error quotes the text after the
first ':' of a password containing '/', a connection error names the "host" and "port" parsed
out of such a mangled URL (part of the password, then), and a server may echo the arguments
of a refused AUTH. So the message is chosen from the exception's class and errno only, never
from its text.
"""

from __future__ import annotations

import os
import re

import redis

#: redis-py's connection errors: "Error <errno> connecting to <host>:<port>. <strerror>."
_ERRNO = re.compile(r"^Error (-?\d+) ")

_HINT = (
    "check its form (redis://[user:password@]host:port/db, rediss:// for TLS, "
    "redis+sentinel://...) and percent-encode '/', '@', ':' and '%' in the user and password"
)


def _connection(exc: BaseException) -> str:
    match = _ERRNO.match(str(exc))
    if match is None:
        return "cannot connect to the server it names"
    errno = int(match.group(1))
    if errno < 0:  # getaddrinfo's codes: the host part did not resolve
        return f"its host name does not resolve (getaddrinfo error {errno}); " + _HINT
    # The reason is the local C library's text for the number, not the exception's text.
    return f"cannot connect to the server it names: {os.strerror(errno)}"


def describe(exc: BaseException, source: str) -> str:
    """One line for status and Events: the source (names chosen by the operator, such as
    "the Redis URL in Secret ns/name, key k") and the kind of failure, with no URL text."""
    kind = type(exc).__name__
    if isinstance(exc, redis.AuthenticationError):
        why = "the server refused its user name or password"
    elif isinstance(exc, redis.TimeoutError):
        why = "the server it names did not answer in time"
    elif isinstance(exc, redis.ConnectionError):
        why = _connection(exc)
    elif isinstance(exc, redis.RedisError):
        why = "the server answered with an error"
    elif isinstance(exc, ValueError):
        why = "it cannot be parsed as a URL; " + _HINT
    else:
        why = "it could not be used"
    return f"{source}: {why} ({kind})"
