"""RQ's Redis key names, taken from RQ's own builders, so ``RQ_KEY_PREFIX`` is honoured.

RQ 3.0 makes its key prefix configurable (the ``RQ_KEY_PREFIX`` environment variable, read when
rq is imported). Code that wrote ``"rq:worker:"`` by hand would read the wrong keys under another
prefix; everything here goes through RQ's classes and templates instead. Only the execution hash
has no class-level builder in RQ (``Execution.key`` is an instance property), so it is composed
from ``RQ_KEY_PREFIX`` exactly as that property does.

"Active" is defined here too, once: RQ scores a StartedJobRegistry entry with the time its
heartbeat expires, so an entry is a running job while its score is at least now.
"""

from __future__ import annotations

from rq.defaults import RQ_KEY_PREFIX
from rq.executions import ExecutionRegistry
from rq.job import Job
from rq.results import Result
from rq.worker import Worker


def worker_key(worker_name: str) -> str:
    """The worker's registration hash (pid, hostname, state, death)."""
    return f"{Worker.redis_worker_namespace_prefix}{worker_name}"


def execution_key(composite: str) -> str:
    """One execution's hash; composite is ``<job id>:<execution id>``, the started-registry
    member."""
    return f"{RQ_KEY_PREFIX}:execution:{composite}"


def job_key(job_id: str) -> str:
    """The job's hash."""
    return Job.key_for(job_id)


def results_key(job_id: str) -> str:
    """The stream of the job's results (one per attempt)."""
    return str(Result.get_key(job_id))


def executions_key(job_id: str) -> str:
    """The registry of the job's executions."""
    return ExecutionRegistry.key_template.format(job_id)


def active_bounds(now: float) -> tuple[float, str]:
    """The started-registry score range (min, max) of running jobs: heartbeat expiry >= now."""
    return now, "+inf"
