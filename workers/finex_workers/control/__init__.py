"""Queue control: the runbook's steps as functions. The CLI and the operator both call these.

One implementation of each step, in modules named for what they hold:

- :mod:`.state`: read models (``queue_state``, live workers, running jobs)
- :mod:`.pausing`: pause and release under a holder's name, resume, asking workers to stop
- :mod:`.recovery`: ``clean_stuck_jobs``, for jobs whose worker died
- :mod:`.dlq`: list, retry and empty the dead-letter queue
- :mod:`.scripts`: the Lua scripts in ``lua/``, including the one "put back at the head"
- :mod:`.rqmirror`: the rq release the scripts mirror, and the start-up check for it

Callers import this package (``from finex_workers import control``) and use the names below.
"""

from finex_workers.control.dlq import (
    DeadJob,
    DlqSummary,
    Progress,
    dlq_summaries,
    empty_dlq,
    list_dlq,
    retry_dlq,
)
from finex_workers.control.pausing import (
    Holder,
    StopReport,
    holds,
    is_paused,
    pause,
    paused_by,
    release,
    resume,
    stop_workers,
)
from finex_workers.control.recovery import (
    CleanReport,
    Crash,
    clean_stuck_jobs,
    return_for_outage,
)
from finex_workers.control.state import QueueState, active_jobs, live_workers, queue_state
from finex_workers.core.keys import dlq_retries_key

__all__ = [
    "CleanReport",
    "Crash",
    "DeadJob",
    "DlqSummary",
    "Holder",
    "Progress",
    "QueueState",
    "StopReport",
    "active_jobs",
    "clean_stuck_jobs",
    "dlq_retries_key",
    "dlq_summaries",
    "empty_dlq",
    "holds",
    "is_paused",
    "list_dlq",
    "live_workers",
    "pause",
    "paused_by",
    "queue_state",
    "release",
    "resume",
    "retry_dlq",
    "return_for_outage",
    "stop_workers",
]
