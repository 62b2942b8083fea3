"""The hard stop for a job that never returns to Python: its supervisor ends the process.

RQ's job timeout is a SIGALRM whose handler raises in the job's thread, between two Python
bytecodes. A job stuck in C code (a C extension's blocking call, a regular expression that holds
the GIL, a library that blocks SIGALRM) never runs that handler, and its heartbeats go on, so
nothing would ever stop it. Here each worker process writes its job's hard deadline (timeout +
:func:`margin`) into a cell of memory it shares with its supervisor, who checks every cell
several times a second and SIGKILLs a worker past its deadline: a separate process, so it works
whatever the stuck job holds. The job stays in the started registry; the supervisor's sweep
finds its process gone and recovers it like any crashed worker's job (an attempt used).

Writing a deadline is one store into shared memory, so the hot path pays nothing measurable.
"""

from __future__ import annotations

import mmap
import struct
import time
from typing import Any

from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

_CELL = struct.Struct("d")


def margin(timeout: float) -> float:
    """Time a timed-out job gets to wind down (cancel its statement, record its failure)."""
    return min(30.0, max(5.0, timeout / 10))


class Deadlines:
    """One cell per worker slot, in anonymous shared memory made before any fork."""

    def __init__(self, slots: int) -> None:
        self._mem = mmap.mmap(-1, _CELL.size * max(1, slots))

    def set(self, index: int, deadline: float) -> None:
        """The deadline on time.monotonic()'s clock (the same in every process); 0: none."""
        _CELL.pack_into(self._mem, index * _CELL.size, deadline)

    def get(self, index: int) -> float:
        return float(_CELL.unpack_from(self._mem, index * _CELL.size)[0])


#: This worker process's cell, set once after fork by the supervisor's child (None: no
#: supervisor, as in tests that run a worker in-process).
_mine: tuple[Deadlines, int] | None = None


def use(deadlines: Deadlines, index: int) -> None:
    """Make this process write its job deadlines into deadlines[index]."""
    global _mine  # noqa: PLW0603 - one worker per process
    _mine = (deadlines, index)
    deadlines.set(index, 0.0)


def arm(timeout: float) -> None:
    if _mine is not None and timeout > 0:
        _mine[0].set(_mine[1], time.monotonic() + timeout + margin(timeout))


def disarm() -> None:
    if _mine is not None:
        _mine[0].set(_mine[1], 0.0)


class BackstopDeathPenalty(UnixSignalDeathPenalty):
    """RQ's SIGALRM timeout, plus the supervisor's hard stop at timeout + margin."""

    def __init__(
        self, timeout: float, exception: type[BaseException] = JobTimeoutException, **kwargs: Any
    ) -> None:
        super().__init__(timeout, exception, **kwargs)  # type: ignore[no-untyped-call]

    def setup_death_penalty(self) -> None:
        super().setup_death_penalty()  # type: ignore[no-untyped-call]
        arm(float(self._timeout))

    def cancel_death_penalty(self) -> None:
        disarm()
        super().cancel_death_penalty()  # type: ignore[no-untyped-call]
