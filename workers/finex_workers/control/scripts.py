"""The control layer's Lua scripts, kept as ``.lua`` files beside this module.

Each script runs as one atomic step in Redis. ``put_back.lua`` holds the one implementation of
"put a taken job back at the head of its queue"; the scripts that need it get it prepended, so
the stuck-job sweep and the intermediate-list repair share it. ``claim.lua`` is the worker's
hot path: the pause check, the pop and RQ's start bookkeeping in one step.
"""

from __future__ import annotations

import functools
from importlib.resources import files

import redis
from redis.commands.core import Script

from finex_workers.infra.redisconn import get_queue

#: Scripts that call put_back(); it is prepended to their source.
_USES_PUT_BACK = frozenset({"put_back_job", "recover_one"})


@functools.cache
def source(name: str) -> str:
    """The source of ``lua/<name>.lua``, with the put_back library when the script uses it."""
    text = (files(__package__) / "lua" / f"{name}.lua").read_text()
    if name in _USES_PUT_BACK:
        text = source("put_back") + "\n" + text
    return text


def script(conn: redis.Redis, name: str) -> Script:
    """The script bound to a connection; redis-py sends EVALSHA and loads it on first use."""
    return conn.register_script(source(name))


def put_back(conn: redis.Redis, queue: str, job_id: str, *, first_seen_key: str = "") -> bool:
    """Move a taken job from RQ's intermediate list back to the head of its queue, atomically.

    False if the id was no longer in the intermediate list (someone else moved it).
    """
    q = get_queue(queue, conn)
    keys = [q.intermediate_queue_key, q.key, *([first_seen_key] if first_seen_key else [])]
    return bool(script(conn, "put_back_job")(keys=keys, args=[job_id]))
