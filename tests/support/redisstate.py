"""The whole state of one Redis database, normalised, and the differences between two.

For the equivalence test with rq (tests/integration/test_rq_equivalence.py): the same jobs run
through rq's own worker and through ours on two databases, and the two states must be equal
once what differs between any two runs is replaced by a placeholder: times (ISO dates, epoch
seconds, zset scores that are times), execution ids (uuid4 hex), stream entry ids, durations,
and a traceback's frames (its last line, the exception, is kept). TTLs compare as present or not.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any

import redis

_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
_HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")
_EPOCH = re.compile(r"1\d{9}(\.\d+)?")
_NUMBER = re.compile(r"-?\d+\.\d+(e-?\d+)?")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
#: Hash fields whose value is a measured duration in seconds.
DURATION_FIELDS = frozenset({"total_working_time"})
#: Hash fields holding a client's address, host:port; the port is the connection's own.
ADDRESS_FIELDS = frozenset({"ip_address"})
#: Hash fields of our own inside rq's hashes (a worker's PID namespace, a job's crash count):
#: rq reads a hash by its own field names and ignores others, so they are extensions, not
#: differences. Like the `finex:` keys, they are left out of the comparison.
OWN_FIELD_PREFIX = "finex_"


@dataclass(frozen=True)
class Entry:
    """One key: its type, whether it expires, and its normalised content."""

    type: str
    expires: bool
    value: Any


def normalise_text(text: str) -> str:
    if "Traceback (most recent call last)" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        text = f"<traceback> {lines[-1]}"
    if _EPOCH.fullmatch(text):
        return "<epoch>"
    return _HEX_ID.sub("<id>", _ISO_TIME.sub("<time>", text))


def _unzip(value: bytes) -> str | None:
    try:
        return zlib.decompress(value).decode()
    except (zlib.error, UnicodeDecodeError):
        return None


def normalise(value: bytes, field: str = "") -> str:
    """A stored value with its run-specific parts replaced; binary values stay as repr.

    Compressed text (rq zlib-compresses exc_info, and base64-encodes it in a result's
    exc_string) is compared uncompressed, so a traceback's frames can be set aside.
    """
    try:
        text = value.decode()
    except UnicodeDecodeError:
        unzipped = _unzip(value)
        if unzipped is None:
            return repr(value)
        text = "zlib:" + unzipped
    if _BASE64.fullmatch(text):
        try:
            unzipped = _unzip(base64.b64decode(text))
        except binascii.Error:
            unzipped = None
        if unzipped is not None:
            text = "base64-zlib:" + unzipped
    if field in DURATION_FIELDS and _NUMBER.fullmatch(text):
        return "<seconds>"
    if field in ADDRESS_FIELDS:
        text = re.sub(r":\d+$", ":<port>", text)
    return normalise_text(text)


def _score(score: float) -> str:
    if math.isinf(score):
        return "+inf" if score > 0 else "-inf"
    return "<time>" if score > 1e9 else repr(score)


def snapshot(conn: redis.Redis, ignore_prefixes: tuple[str, ...] = ()) -> dict[str, Entry]:
    """Every key of the connection's database, normalised (keys under ignore_prefixes left out)."""
    state: dict[str, Entry] = {}
    for raw_key in sorted(conn.scan_iter(count=1000)):
        key = raw_key.decode()
        if key.startswith(ignore_prefixes):
            continue
        kind = conn.type(raw_key).decode()
        value: Any
        if kind == "hash":
            value = {
                f.decode(): normalise(v, f.decode())
                for f, v in conn.hgetall(raw_key).items()
                if not f.decode().startswith(OWN_FIELD_PREFIX)
            }
        elif kind == "set":
            value = sorted(normalise(m) for m in conn.smembers(raw_key))
        elif kind == "zset":
            value = sorted(
                (normalise(m), _score(s)) for m, s in conn.zrange(raw_key, 0, -1, withscores=True)
            )
        elif kind == "list":
            value = [normalise(m) for m in conn.lrange(raw_key, 0, -1)]
        elif kind == "stream":
            value = [
                {f.decode(): normalise(v, f.decode()) for f, v in fields.items()}
                for _, fields in conn.xrange(raw_key)
            ]
        elif kind == "string":
            value = normalise(conn.get(raw_key) or b"")
        else:
            value = f"<{kind}>"
        ttl = conn.pttl(raw_key)
        if ttl == -2:  # expired between the scan and now
            continue
        state[normalise_text(key)] = Entry(kind, ttl >= 0, value)
    return state


@dataclass(frozen=True)
class Difference:
    """One key (and field, member or stream entry) whose two values differ."""

    key: str
    where: str  # "" for the key itself; "field 'x'", "entry 0 field 'x'", "members", ...
    theirs: Any
    ours: Any
    who: str = "rq"

    def __str__(self) -> str:
        where = f" {self.where}" if self.where else ""
        return f"{self.key}{where}: {self.who} {self.theirs!r}, ours {self.ours!r}"


ABSENT = "<absent>"


def differences(
    theirs: dict[str, Entry], ours: dict[str, Entry], who: str = "rq"
) -> list[Difference]:
    """Every difference, naming the key and the field (or member, or entry)."""
    out: list[Difference] = []
    for key in sorted(theirs.keys() | ours.keys()):
        a, b = theirs.get(key), ours.get(key)
        if a is None or b is None:
            out.append(Difference(key, "the key", _whole(a), _whole(b), who))
            continue
        if a.type != b.type:
            out.append(Difference(key, "type", a.type, b.type, who))
            continue
        if a.expires != b.expires:
            said = {True: "has a TTL", False: "no TTL"}
            out.append(Difference(key, "TTL", said[a.expires], said[b.expires], who))
        out += [
            Difference(key, where, x, y, who)
            for where, x, y in _value_differences(a.value, b.value)
        ]
    return out


def _whole(entry: Entry | None) -> Any:
    return ABSENT if entry is None else f"{entry.type} {entry.value!r}"


def _value_differences(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            (f"field {f!r}", a.get(f, ABSENT), b.get(f, ABSENT))
            for f in sorted(a.keys() | b.keys())
            if a.get(f, ABSENT) != b.get(f, ABSENT)
        ]
    if isinstance(a, list) and isinstance(b, list) and a and b and isinstance(a[0], dict):
        if len(a) != len(b):
            return [("entries", a, b)]
        return [
            (f"entry {i} {where}", x, y)
            for i, (one, other) in enumerate(zip(a, b, strict=True))
            for where, x, y in _value_differences(one, other)
        ]
    if a != b:
        return [("value", a, b)]
    return []
