"""The redis+sentinel:// URL form (core/urls.py): parsed, checked and redacted without I/O."""

from __future__ import annotations

import pytest

from finex_workers.core.settings import Settings
from finex_workers.core.urls import (
    REDIS_SCHEMES,
    SentinelTarget,
    parse_sentinel_url,
    redact,
    url_problem,
)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster/0",
            SentinelTarget((("s1", 26379), ("s2", 26380)), "mymaster", 0),
        ),
        (
            "redis+sentinel://:secret@s1,s2/queue-master/3?sentinel_password=sp",
            SentinelTarget((("s1", 26379), ("s2", 26379)), "queue-master", 3, None, "secret", "sp"),
        ),
        (
            "redis+sentinel://app:pw@10.0.0.1:5000/m",
            SentinelTarget((("10.0.0.1", 5000),), "m", 0, "app", "pw"),
        ),
    ],
)
def test_sentinel_urls_parse(url: str, target: SentinelTarget) -> None:
    assert parse_sentinel_url(url) == target
    assert url_problem(url, REDIS_SCHEMES) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://s1:26379/", "service name"),
        ("redis+sentinel://s1:99999/m/0", "Sentinel port"),
        ("redis+sentinel://s1/m/x", "database"),
        ("redis+sentinel://,s2/m", "empty Sentinel host"),
    ],
)
def test_bad_sentinel_urls_say_what_is_wrong(url: str, problem: str) -> None:
    assert problem in (url_problem(url, REDIS_SCHEMES) or "")


def test_sentinel_passwords_are_redacted() -> None:
    shown = redact("redis+sentinel://:secret@s1,s2/m/0?sentinel_password=sp")
    assert "secret" not in shown
    assert "sp" not in shown.split("?")[1]
    assert shown.startswith("redis+sentinel://:***@s1,s2/m/0")


def test_settings_accept_a_sentinel_redis_url() -> None:
    url = "redis+sentinel://s1:26379,s2:26379/mymaster/0"
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url
