"""Import path of the job functions before the layered layout, kept so old jobs still run.

RQ stores each job's function as a dotted path. Jobs enqueued before the package was laid out in
layers name ``finex_workers.jobs.<function>``; new jobs name
``finex_workers.runtime.jobs.<function>``. This module only re-exports, so a queue that still
holds old jobs drains normally. It can go once no Redis holds such jobs (``rq info`` or
``finex workers list-dlq`` show the function of each). See docs/architecture.md.
"""

from finex_workers.runtime.jobs import (
    growth_batch_job,
    growth_job,
    matrix_job,
    noop_job,
    probability_job,
    probe_job,
)

__all__ = [
    "growth_batch_job",
    "growth_job",
    "matrix_job",
    "noop_job",
    "probability_job",
    "probe_job",
]
