"""A SIGTERM that reaches a container's PID 1 while it starts is kept, not lost.

In a worker Pod, ``finex workers start`` is the container's PID 1, and the kernel drops a signal
sent to a PID namespace's init when init has no handler for it. The supervisor installs its
handlers only after the CLI's imports and the settings (about a second; more on a loaded or
fresh machine). A Pod deleted in that window lost its SIGTERM and ran on until the grace
period's SIGKILL (job timeout + margin, 90 s in the node tests), its workers live in Redis all
that time: a rollout that scales an old ReplicaSet up and at once down again does exactly that
(issue 22: "4 live growth workers not seen within 60 s").

So the ``finex`` package, when it runs as PID 1, installs a handler that only remembers the
signal before it imports anything else, and the supervisor stops before it starts any worker.
What is left is the interpreter's own start, a few tens of milliseconds. SIGINT keeps Python's
own handler (KeyboardInterrupt).
"""

from __future__ import annotations

import signal
from types import FrameType

_received: list[int] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def install() -> None:
    """Remember a SIGTERM from now on (until the supervisor installs its own handler)."""
    signal.signal(signal.SIGTERM, _remember)


def received() -> int | None:
    """The signal remembered, if one came."""
    return _received[0] if _received else None
