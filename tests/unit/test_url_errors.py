"""A URL's text never reaches status or Events: passwords with '/', '@', ':' and '%'.

The exceptions are the real ones: redis-py parsing the URL, and the connection errors it
raises (constructed with its message format, which quotes the host and port it parsed).
"""

from __future__ import annotations

import re

import pytest
import redis

from finex_operator.urlerrors import describe

#: Each password has distinctive pieces between its separators; none may show in a message.
PASSWORDS = [
    "Zq7x/Wv8y",
    "Kp3m@Rt6n",
    "Hj2b:Lf5c",
    "Qs4d%Gm1e",
    "Nz8w/Py2u@Bc4v:Dk6t%Ey3",
    "12/Zq7x",
]
SOURCE = "the Redis URL in Secret ns/finex-urls, key redis-url"


def pieces(password: str) -> list[str]:
    return [p for p in re.split(r"[/@:%]", password) if len(p) >= 2]


def parse_error(url: str) -> BaseException | None:
    try:
        redis.Redis.from_url(url)
    except ValueError as exc:
        return exc
    return None


@pytest.mark.parametrize("password", PASSWORDS)
def test_no_piece_of_the_password_or_user_is_in_the_message(password: str) -> None:
    url = f"redis://finexuser:{password}@redis.example:6379/0"
    errors: list[BaseException] = [
        redis.AuthenticationError(
            f"ERR unknown command 'AUTH', with args beginning with: 'finexuser' '{password}'"
        ),
        redis.ResponseError(f"WRONGPASS {password}"),
        # What redis-py says when a '/' made it read part of the URL as host and port.
        redis.ConnectionError(
            f"Error -2 connecting to finexuser:{pieces(password)[0]}. Name or service not known."
        ),
        redis.ConnectionError(f"Error 111 connecting to {url[8:]}. Connection refused."),
        redis.TimeoutError(f"Timeout connecting to {url}"),
        RuntimeError(url),
    ]
    if (parsed := parse_error(url)) is not None:
        errors.append(parsed)
    for exc in errors:
        message = describe(exc, SOURCE)
        assert message.startswith(SOURCE)
        for piece in [*pieces(password), "finexuser", "redis.example", "6379"]:
            assert piece not in message, (piece, message)


def test_a_password_with_a_slash_is_a_parse_error_said_as_such() -> None:
    exc = parse_error("redis://u:Zq7x/Wv8y@redis.example:6379/0")
    assert exc is not None
    assert "Zq7x" in str(exc)  # the text that used to reach status
    message = describe(exc, SOURCE)
    assert "cannot be parsed as a URL" in message
    assert "percent-encode '/', '@', ':' and '%'" in message


def test_a_refused_connection_keeps_the_systems_reason() -> None:
    exc = redis.ConnectionError("Error 111 connecting to 10.0.0.1:6379. Connection refused.")
    assert describe(exc, SOURCE) == (
        f"{SOURCE}: cannot connect to the server it names: Connection refused (ConnectionError)"
    )
