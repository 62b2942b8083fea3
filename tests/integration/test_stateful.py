"""The test that finds the next one: a Hypothesis state machine over the real queue (issue 18).

Steps drive the project's real code against the test Redis: enqueue with id reuse
(``enqueue_unique``) and dependents (RQ's own ``depends_on``), the real worker loop in this
process (claim, finish, failure, timeout, retries), a worker killed with a job in hand, the
stuck-job sweep, pause and resume, DLQ retry, and the passage of time (every TTL and heartbeat
score moves forward, as if the clock jumped). After every step the invariants hold:

- every unit of work enqueued is pending (queued, scheduled, deferred), running (a started
  entry), done (its job succeeded since), or in the DLQ with its reason: never silently gone;
- no job runs twice at once (one started entry per id, one copy per id in the queue, and the
  job function never sees a second run of its id in progress);
- no queue is paused without an owner recorded.

Size: FINEX_STATEFUL_EXAMPLES (default 40) runs of FINEX_STATEFUL_STEPS (default 30) steps, with
a fixed seed under ``make test``; ``make chaos`` runs it longer.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from uuid import uuid4

import pytest
import redis
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from rq.job import Job
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry

from finex_workers import control
from finex_workers.core.keys import paused_key
from finex_workers.core.settings import Settings
from finex_workers.infra.processes import pid_namespace
from finex_workers.infra.redisconn import get_queue, text
from finex_workers.runtime import enqueue
from tests.support.inprocess import InProcessWorker, run_burst

QUEUE = "growth"
UNIT = "tests.support.testjobs.unit"
EXAMPLES = int(os.environ.get("FINEX_STATEFUL_EXAMPLES", "40"))
STEPS = int(os.environ.get("FINEX_STATEFUL_STEPS", "30"))
#: How far one "time passes" step moves the clock: past result_ttl (3600) and every heartbeat,
#: short of the DLQ's TTL.
JUMP = 2 * 3600
#: A pid no process has (above the kernel's pid_max): a worker "on this host" that is dead.
DEAD_PID = 4194305 + 1


@dataclass(frozen=True)
class Unit:
    """One enqueue: the job that does the work, and its success count before the enqueue."""

    job_id: str
    done_before: int


@seed(int(os.environ.get("FINEX_STATEFUL_SEED", "18")))  # fixed: make test is reproducible
class QueueMachine(RuleBasedStateMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.conn = redis.Redis.from_url(self.url)
        self.conn.flushall()
        self.q = get_queue(QUEUE, self.conn)
        self.settings = Settings.from_env(
            {
                "REDIS_URL": self.url,
                "DATABASE_URL": "postgresql://unused/unused",
                "FINEX_RETRY_MAX": "1",
                "FINEX_RETRY_INTERVALS": "0",
                "FINEX_JOB_TIMEOUT": "1",
                "FINEX_WORKER_TTL": "6",
            }
        )
        self.units: list[Unit] = []
        self.dependents = 0

    def teardown(self) -> None:
        if os.environ.get("FINEX_STATEFUL_TRACE"):
            done = sum(self.done(u.job_id) > u.done_before for u in self.units)
            stats = self.conn.hgetall(f"finex:stats:{QUEUE}")
            print(f"units={len(self.units)} done={done} stats={stats}")
        self.conn.close()

    def done(self, job_id: str) -> int:
        return int(self.conn.get(f"test:done:{job_id}") or 0)

    # -- steps --------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        assert self.conn.dbsize() == 0

    @rule(
        base=st.sampled_from(["u-1", "u-2", "u-3"]),
        outcome=st.sampled_from(["ok", "ok", "ok", "fail", "slow"]),
    )
    def enqueue(self, base: str, outcome: str) -> None:
        got = enqueue.enqueue_unique(self.q, UNIT, {"outcome": outcome}, base, self.settings)
        self.units.append(Unit(got.job_id, self.done(got.job_id)))

    # Enqueueing and working are what a fleet mostly does: each has a second rule, so a run
    # spends about half its steps on them (Hypothesis picks among rules uniformly).
    enqueue_more = enqueue

    @rule(parent=st.integers(min_value=0, max_value=50))
    def enqueue_dependent(self, parent: int) -> None:
        if not self.units:
            return
        parent_id = self.units[parent % len(self.units)].job_id
        if not self.conn.exists(Job.key_for(parent_id)):
            return  # a parent whose result expired: RQ refuses it
        self.dependents += 1
        child = f"dep-{self.dependents}"
        self.q.enqueue(UNIT, kwargs={"outcome": "ok"}, job_id=child, depends_on=parent_id)
        self.units.append(Unit(child, 0))

    @rule(jobs=st.integers(min_value=1, max_value=3))
    def work(self, jobs: int) -> None:
        """The real worker loop, in this process, for a few jobs (or until the queue is empty)."""
        run_burst(self.conn, QUEUE, max_jobs=jobs)

    work_more = work

    @rule()
    def kill_a_worker_with_a_job_in_hand(self) -> None:
        """A worker claims a job and is SIGKILLed before it runs it (its key says pid and host)."""
        name = f"{QUEUE}.k-{uuid4().hex[:6]}"
        worker = InProcessWorker([self.q], connection=self.conn, name=name)
        claimed = worker._claim()
        if isinstance(claimed, tuple):
            self.conn.hset(
                worker.key,
                mapping={
                    "pid": DEAD_PID,
                    "hostname": socket.gethostname(),
                    "finex_pidns": pid_namespace(),
                },
            )

    @rule()
    def sweep(self) -> None:
        control.clean_stuck_jobs(self.conn, QUEUE)

    @rule()
    def pause(self) -> None:
        control.pause(self.conn, QUEUE, by="stateful-test")

    @rule()
    def resume(self) -> None:
        control.resume(self.conn, QUEUE)

    @rule()
    def retry_dlq(self) -> None:
        control.retry_dlq(self.conn, QUEUE)

    @rule()
    def time_passes(self) -> None:
        """The clock jumps JUMP seconds: keys whose TTL runs out are gone, scores move back."""
        for key in self.conn.scan_iter(count=1000):
            ttl = self.conn.pttl(key)
            if 0 < ttl <= JUMP * 1000:
                self.conn.delete(key)
            elif ttl > 0:
                self.conn.pexpire(key, ttl - JUMP * 1000)
        registries = [
            self.q.started_job_registry.key,
            self.q.finished_job_registry.key,
            FailedJobRegistry(QUEUE, self.conn).key,
            ScheduledJobRegistry(QUEUE, self.conn).key,
        ]
        for key in registries:
            for member, score in self.conn.zrange(key, 0, -1, withscores=True):
                if score != float("inf"):
                    self.conn.zadd(key, {member: score - JUMP})

    # -- invariants ---------------------------------------------------------------------------

    def where(self, job_id: str) -> str | None:
        """Where a job that has not done its work is: pending, running or in the DLQ, or None."""
        status = text(self.conn.hget(Job.key_for(job_id), "status") or b"")
        queued = job_id.encode() in self.conn.lrange(self.q.key, 0, -1)
        if status == "queued" and queued:
            return "queued"
        if status == "scheduled" and ScheduledJobRegistry(QUEUE, self.conn).get_job_ids().count(
            job_id
        ):
            return "scheduled"
        if status == "deferred" and job_id in DeferredJobRegistry(QUEUE, self.conn).get_job_ids(
            cleanup=False
        ):
            return "deferred"
        started = [text(e) for e in self.conn.zrange(self.q.started_job_registry.key, 0, -1)]
        if status == "started" and any(e.partition(":")[0] == job_id for e in started):
            return "running"
        if status == "failed" and self.conn.zscore(FailedJobRegistry(QUEUE, self.conn).key, job_id):
            result = Job.fetch(job_id, connection=self.conn).latest_result()
            return "dlq" if result is not None and result.exc_string else None
        return None

    @invariant()
    def nothing_is_silently_gone(self) -> None:
        for unit in self.units:
            if self.done(unit.job_id) > unit.done_before:
                continue
            assert self.where(unit.job_id) is not None, (
                f"unit {unit} is gone: status "
                f"{self.conn.hget(Job.key_for(unit.job_id), 'status')!r}, "
                f"dropped={self.conn.hget('finex:stats:' + QUEUE, 'dropped')!r}"
            )

    @invariant()
    def no_job_runs_twice_at_once(self) -> None:
        assert int(self.conn.get("test:overlaps") or 0) == 0
        started = [
            text(e).partition(":")[0]
            for e in self.conn.zrange(self.q.started_job_registry.key, 0, -1)
        ]
        assert len(started) == len(set(started)), f"two executions of one job: {started}"
        queued = [text(i) for i in self.conn.lrange(self.q.key, 0, -1)]
        assert len(queued) == len(set(queued)), f"a job twice in the queue: {queued}"

    @invariant()
    def no_pause_without_an_owner(self) -> None:
        held = control.holds(self.conn, QUEUE)
        paused = bool(self.conn.exists(paused_key(QUEUE)))
        assert paused == bool(held), f"paused={paused} but holders {held}"
        assert all(by.strip() for by in held), f"a pause held by nobody: {held}"


def test_the_queue_never_loses_strands_or_doubles_work(redis_url: str) -> None:
    QueueMachine.url = redis_url
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
        _min_steps=STEPS,  # every run takes its full length; short runs find little
    )


pytestmark = pytest.mark.timeout(900)
