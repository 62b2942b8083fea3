"""Run the ``finex`` or ``rq`` command line with every Redis round trip counted.

    python bench/rtt.py OUT_FILE finex|rq|floor ARGS...

A round trip is one send on a Redis connection: a single command, or a whole pipeline (redis-py
sends a pipeline in one write and reads all replies). ``INFO commandstats`` counts commands; this
counts the waits on the network, which is what costs latency. Each process, including forked
children that leave through ``os._exit`` (our supervisor's workers, rq's work horses), appends
one line ``<pid> <round trips>`` to OUT_FILE when it exits.
"""

from __future__ import annotations

import atexit
import os
import sys

from redis.connection import AbstractConnection

_count = 0
_out = ""


def _reset() -> None:
    global _count  # noqa: PLW0603 - a per-process counter is the point
    _count = 0


def _write() -> None:
    with open(_out, "a") as out:
        out.write(f"{os.getpid()} {_count}\n")


def _install() -> None:
    send = AbstractConnection.send_packed_command
    real_exit = os._exit

    def counted_send(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        global _count  # noqa: PLW0603
        _count += 1
        send(self, command, check_health)

    def counted_exit(code: int) -> None:
        _write()
        real_exit(code)

    AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
    os._exit = counted_exit
    os.register_at_fork(after_in_child=_reset)
    atexit.register(_write)


def main() -> None:
    global _out
    _out, tool, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    _install()
    sys.argv = [tool, *args]
    if tool == "finex":
        from finex_workers.cli import main as finex_main

        sys.exit(finex_main())
    elif tool == "rq":
        from rq.cli import main as rq_main

        rq_main()
    elif tool == "floor":
        import floor

        floor.main()
    else:
        sys.exit(f"unknown tool {tool!r}; expected finex, rq or floor")


if __name__ == "__main__":
    main()
