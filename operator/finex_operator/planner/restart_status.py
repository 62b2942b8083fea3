"""status.restart as a typed, frozen value: parsed once from the CR, rendered back for the patch.

The restart's whole state lives in status.restart (an operator killed in any phase resumes from
what it reads there), so this record is the restart. It is never changed in place: a phase
change is `restart.enter(...)`, anything else `dataclasses.replace`, each returning a copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum, unique
from typing import Any, Final, TypeVar

from finex_operator.planner.timestamps import format_time, parse_time

#: Entries kept in status.restart.history (one restart has six phases).
HISTORY_LIMIT: Final = 12

_E = TypeVar("_E", bound=StrEnum)


@unique
class Phase(StrEnum):
    """A step of the safe restart, in order; also the `Restarting` condition's reason."""

    PAUSING = "Pausing"
    DRAINING = "Draining"
    STOPPING = "Stopping"
    STARTING = "Starting"
    RESUMING = "Resuming"
    DONE = "Done"


PHASES: Final = tuple(Phase)


@unique
class RestartResult(StrEnum):
    """How the last restart ended; NONE ("") while one runs (the CRD's enum)."""

    NONE = ""
    SUCCEEDED = "Succeeded"
    ABORTED = "Aborted"
    REFUSED = "Refused"


@dataclass(frozen=True)
class PhaseRecord:
    """One entry of status.restart.history: a phase and when the restart entered it."""

    phase: Phase
    at: datetime


@dataclass(frozen=True)
class RestartStatus:
    """status.restart. None timestamps are rendered as null, which the merge patch removes."""

    #: None only for a status without a phase (never written by this operator).
    phase: Phase | None = None
    result: RestartResult = RestartResult.NONE
    #: The finex.io/restart value this restart handles (or refused, or took as the baseline).
    requested_value: str = ""
    queues: tuple[str, ...] = ()
    started_at: datetime | None = None
    phase_started_at: datetime | None = None
    #: None from the start of a restart until its Done (clears the previous restart's time).
    finished_at: datetime | None = None
    message: str = ""
    #: The latest value annotated while this restart runs; "" when none.
    pending: str = ""
    #: The finex.io/abort-restart value last handled: a different one aborts a running restart.
    abort_value: str = ""
    #: The phase an aborted restart left for Resuming (a deadline or finex.io/abort-restart);
    #: None when it was not aborted.
    aborted_in: Phase | None = None
    history: tuple[PhaseRecord, ...] = ()

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> RestartStatus:
        """Parse status.restart as stored; missing or unreadable fields take their defaults."""
        return cls(
            phase=_enum(Phase, status.get("phase")),
            result=_enum(RestartResult, status.get("result")) or RestartResult.NONE,
            requested_value=str(status.get("requestedValue") or ""),
            queues=tuple(str(q) for q in status.get("queues") or ()),
            started_at=parse_time(status.get("startedAt")),
            phase_started_at=parse_time(status.get("phaseStartedAt")),
            finished_at=parse_time(status.get("finishedAt")),
            message=str(status.get("message") or ""),
            pending=str(status.get("pending") or ""),
            abort_value=str(status.get("abortValue") or ""),
            aborted_in=_enum(Phase, status.get("abortedIn")),
            history=tuple(_records(status.get("history"))),
        )

    def to_status(self) -> dict[str, Any]:
        """The JSON of status.restart, every field present (null for an unset time)."""
        return {
            "phase": self.phase.value if self.phase is not None else None,
            "result": self.result.value,
            "requestedValue": self.requested_value,
            "queues": list(self.queues),
            "startedAt": _time_or_none(self.started_at),
            "phaseStartedAt": _time_or_none(self.phase_started_at),
            "finishedAt": _time_or_none(self.finished_at),
            "message": self.message,
            "pending": self.pending,
            "abortValue": self.abort_value,
            "abortedIn": self.aborted_in.value if self.aborted_in is not None else None,
            "history": [{"phase": r.phase.value, "at": format_time(r.at)} for r in self.history],
        }

    @property
    def running(self) -> bool:
        """A restart is in progress (it has a phase other than Done)."""
        return self.phase is not None and self.phase is not Phase.DONE

    def enter(self, phase: Phase, now: datetime, message: str) -> RestartStatus:
        """A copy that has moved to phase at now, with the move in its history."""
        history = (*self.history, PhaseRecord(phase, now))[-HISTORY_LIMIT:]
        return replace(self, phase=phase, phase_started_at=now, message=message, history=history)


def _enum(kind: type[_E], value: object) -> _E | None:
    """The member whose value is value; None for anything else (missing, or not a member)."""
    if not isinstance(value, str):
        return None
    try:
        return kind(value)
    except ValueError:
        return None


def _records(value: object) -> list[PhaseRecord]:
    """History entries; one without a known phase or a time is dropped, not fatal."""
    out = []
    for item in value if isinstance(value, list) else ():
        if not isinstance(item, Mapping):
            continue
        phase, at = _enum(Phase, item.get("phase")), parse_time(item.get("at"))
        if phase is not None and at is not None:
            out.append(PhaseRecord(phase, at))
    return out


def _time_or_none(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None
