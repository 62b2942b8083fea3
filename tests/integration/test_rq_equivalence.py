"""Our worker leaves exactly the state rq's own worker leaves (STYLE.md rule 15).

FinexWorker writes rq 3.0's structures itself (control/lua/claim.lua when it starts a job,
control/lua/finish.lua when a plain job succeeds). Each case here enqueues the same jobs in two
Redis databases of one server, runs them to the end with rq's own SimpleWorker in one and with
FinexWorker in the other, and compares every key: type, TTL present or not, hash fields, set and
zset members, list and stream entries, with times, execution ids and durations normalised
(tests/support/redisstate.py). Both workers run in this process, in burst mode, with the same
name and timings. A difference fails naming the key and the field, rq's value and ours. An rq
upgrade is then a run of this file.

Left out of the comparison, on purpose: keys under ``finex:`` (our own counters, which rq does
not have). Known differences by design, invisible here: ours scores a running job's heartbeat
expiry at worker_ttl, rq at the job timeout + 60 s (FinexWorker.get_heartbeat_ttl_for); only the
TTLs' values differ, and TTLs compare as present or absent. Limits of the normalising: a time
compares as "a time" (so which moment a field records, say last_heartbeat at the start or at the
end, is not compared) and a TTL as present or not.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.client import PubSub
from rq import Queue, Retry, SimpleWorker, Worker
from rq.command import send_stop_job_command
from rq.job import Job

from finex_workers.dev.localservices import LocalService
from finex_workers.runtime.worker import FinexWorker
from tests.support import mirrorjobs, redisstate
from tests.support.waiting import wait_for

QUEUE = "growth"
#: Both workers get this name, so keys and fields that hold it compare as they are.
WORKER = "mirror-worker"
#: rq's database and ours, on the session's Redis (the redis_url fixture flushes all of them).
RQ_DB, OURS_DB = 1, 2
OURS_ONLY = ("finex:",)
JOBS = "tests.support.mirrorjobs"


def _without_ours(state: dict[str, redisstate.Entry]) -> dict[str, redisstate.Entry]:
    return {k: v for k, v in state.items() if not k.startswith(OURS_ONLY)}


@pytest.fixture
def dbs(
    redis_url: str, redis_server: LocalService, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    # rq's command-channel thread waits for a message up to 60 s at a time, and redis-py 8's
    # PubSubWorkerThread.stop() joins it without a timeout: when the thread has already read
    # the UNSUBSCRIBE reply before stop() clears its flag, a worker's teardown takes up to 60 s
    # more (and rq's dead worker's 60 s key expires meanwhile). Shorter waits, same writes.
    run_in_thread = PubSub.run_in_thread

    def short_waits(self: PubSub, sleep_time: float = 0.0, **kwargs: Any) -> Any:
        return run_in_thread(self, sleep_time=min(sleep_time, 0.2), **kwargs)

    monkeypatch.setattr(PubSub, "run_in_thread", short_waits)
    theirs, ours = (
        redis.Redis(host="127.0.0.1", port=redis_server.port, db=n) for n in (RQ_DB, OURS_DB)
    )
    yield theirs, ours
    theirs.close()
    ours.close()
    mirrorjobs.SEEN_WHILE_RUNNING.clear()


def _work(worker: Any) -> None:
    """Run a worker in burst mode, and give pytest its signal handlers back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.work(burst=True, logging_level="WARNING")
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _worker(cls: type, conn: redis.Redis) -> Any:
    return cls(
        [Queue(QUEUE, connection=conn)],
        connection=conn,
        name=WORKER,
        worker_ttl=60,
        job_monitoring_interval=20,
    )


def _enqueue(conn: redis.Redis, func: str, *args: Any, **options: Any) -> Job:
    return Queue(QUEUE, connection=conn).enqueue(f"{JOBS}.{func}", *args, **options)


def _compare(theirs: redis.Redis, ours: redis.Redis) -> list[redisstate.Difference]:
    return redisstate.differences(
        redisstate.snapshot(theirs), _without_ours(redisstate.snapshot(ours))
    )


def _report(found: list[redisstate.Difference], what: str) -> str:
    return f"{what} differs from rq's:\n" + "\n".join(map(str, found))


def _success(conn: redis.Redis) -> None:
    _enqueue(conn, "add", 1, 2, job_id="ok")


def _result_ttl_0(conn: redis.Redis) -> None:
    _enqueue(conn, "add", 1, 2, job_id="ok", result_ttl=0)


def _result_kept_forever(conn: redis.Redis) -> None:
    _enqueue(conn, "add", 1, 2, job_id="ok", result_ttl=-1)


def _failure(conn: redis.Redis) -> None:
    _enqueue(conn, "fail", "no retry", job_id="bad")


def _failure_retried_until_out_of_retries(conn: redis.Redis) -> None:
    _enqueue(conn, "fail", "retried", job_id="bad", retry=Retry(max=2))


def _failure_retry_scheduled(conn: redis.Redis) -> None:
    _enqueue(conn, "fail", "retry later", job_id="bad", retry=Retry(max=2, interval=600))


def _dependents(conn: redis.Redis) -> None:
    _enqueue(conn, "add", 1, 2, job_id="parent")
    _enqueue(conn, "add", 3, 4, job_id="child", depends_on="parent")
    _enqueue(conn, "add", 5, 6, job_id="grandchild", depends_on="child", result_ttl=-1)


def _job_meta(conn: redis.Redis) -> None:
    _enqueue(conn, "record_progress", "half", job_id="meta", meta={"given": "at enqueue"})


def _several_jobs(conn: redis.Redis) -> None:
    for i in range(3):
        _enqueue(conn, "add", i, i, job_id=f"job-{i}")


def _case_id(enqueue: Callable[[redis.Redis], None]) -> str:
    return enqueue.__name__.strip("_").replace("_", "-")


#: The cases after a result_ttl 0, a failure or a retry once found the worker's hash 'busy'
#: where rq's says 'idle' (rq's execute_job writes it after its own recording; ours did not).
CASES = [
    pytest.param(f, id=_case_id(f))
    for f in (
        _success,
        _result_kept_forever,
        _result_ttl_0,
        _failure,
        _failure_retried_until_out_of_retries,
        _failure_retry_scheduled,
        _dependents,
        _job_meta,
        _several_jobs,
    )
]


@pytest.mark.parametrize("enqueue", CASES)
def test_the_end_state_equals_rqs(
    dbs: tuple[redis.Redis, redis.Redis], enqueue: Callable[[redis.Redis], None]
) -> None:
    theirs, ours = dbs
    for conn in dbs:
        enqueue(conn)
    _work(_worker(SimpleWorker, theirs))
    _work(_worker(FinexWorker, ours))
    found = _compare(theirs, ours)
    assert not found, _report(found, "our worker's state")


def test_a_started_job_looks_as_rq_starts_it(dbs: tuple[redis.Redis, redis.Redis]) -> None:
    # claim.lua's writes, seen from inside the running job: the state right after the start.
    theirs, ours = dbs
    for conn in dbs:
        _enqueue(conn, "snapshot_while_running", job_id="running")
    _work(_worker(SimpleWorker, theirs))
    _work(_worker(FinexWorker, ours))
    [while_rq] = mirrorjobs.SEEN_WHILE_RUNNING[RQ_DB]
    [while_ours] = mirrorjobs.SEEN_WHILE_RUNNING[OURS_DB]
    found = redisstate.differences(while_rq, _without_ours(while_ours))
    assert not found, _report(found, "a job our worker started")


#: What rq's forking Worker leaves empty for a stopped job because only its work horse saw it
#: (the parent saves its own copy of the job): (key, where) where rq's side may be '' or absent.
_HORSE_ONLY = {
    ("rq:job:long", "field 'ended_at'"),
    ("rq:job:long", "field 'last_heartbeat'"),
    ("rq:job:long", "field 'worker_name'"),
    ("rq:results:long", "entry 0 field 'execution_ended_at'"),
    ("rq:worker:mirror-worker", "field 'total_working_time'"),
}


def test_a_job_stopped_by_command_ends_as_in_rq(dbs: tuple[redis.Redis, redis.Redis]) -> None:
    # rq's SimpleWorker cannot stop a job either (no horse to kill), so the reference is rq's
    # forking Worker, the rq worker that honours rq.command.send_stop_job_command.
    theirs, ours = dbs

    def stop_once_started(conn: redis.Redis) -> threading.Thread:
        def stop() -> None:
            job = Job("long", connection=conn)
            wait_for("the job to start", lambda: job.get_status(refresh=True) == "started")
            send_stop_job_command(conn, "long")

        thread = threading.Thread(target=stop, daemon=True)
        thread.start()
        return thread

    for conn, cls in ((theirs, Worker), (ours, FinexWorker)):
        _enqueue(conn, "run_until_stopped", 3.0, job_id="long")
        stopper = stop_once_started(conn)
        _work(_worker(cls, conn))
        stopper.join(timeout=10)
    found = [
        d
        for d in _compare(theirs, ours)
        if not ((d.key, d.where) in _HORSE_ONLY and d.theirs in ("", redisstate.ABSENT))
        and not _same_stop_message(d)
    ]
    assert not found, _report(found, "a stopped job's state")


def _same_stop_message(d: redisstate.Difference) -> bool:
    """The one deliberate difference: the result's message. rq's forking Worker says
    "Job stopped by user, work-horse terminated."; ours has no work horse and says which command
    stopped it. Both begin "Job stopped by user", which is what rq-dashboard shows."""
    prefix = "base64-zlib:Job stopped by user"
    return (
        (d.key, d.where) == ("rq:results:long", "entry 0 field 'exc_string'")
        and str(d.theirs).startswith(prefix)
        and str(d.ours).startswith(prefix)
    )
