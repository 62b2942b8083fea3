"""What runs the jobs: the job functions RQ calls, deduplicated enqueueing, the worker (an RQ
SimpleWorker subclass), the supervisor that forks the workers, and the full recompute."""
