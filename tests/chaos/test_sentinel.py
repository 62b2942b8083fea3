"""Redis Sentinel: REDIS_URL names a Sentinel service, the master is SIGKILLed mid-backlog, the
Sentinel promotes the replica, and the fleet follows; then the ledger.

Replication is asynchronous: a write the master acknowledged but had not yet sent to the
replica is gone after the failover (as a second of writes can be with AOF everysec after a
crash). For a queue that is a job enqueued just before the failover that is lost, or a job
whose "finished" was lost, which runs again. The table reports both, and the test fails on any
lost job.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from finex_workers.dev import localservices
from tests.chaos.conftest import JOBS, Services
from tests.chaos.trial import Trial
from tests.support.waiting import wait_for


class SentinelSet:
    """A master, a replica and one Sentinel (quorum 1) on loopback."""

    def __init__(self, root: Path) -> None:
        self.master = localservices.start_redis(root / "a", appendonly=True)
        self.replica = localservices.start_redis(
            root / "b",
            appendonly=True,
            extra_args=["--replicaof", "127.0.0.1", str(self.master.port)],
        )
        replica = redis.Redis(port=self.replica.port)
        wait_for(
            "the replica to sync",
            lambda: replica.info("replication").get("master_link_status") == "up",
        )
        self.sentinel = localservices.start_sentinel(root / "s", self.master.port)
        self.url = self.sentinel.url

    def master_port(self) -> int:
        s = redis.Redis(port=self.sentinel.port)
        return int(s.sentinel_get_master_addr_by_name("mymaster")[1])

    def kill_master(self) -> None:
        os.killpg(self.master.process.pid, signal.SIGKILL)
        self.master.process.wait()

    def stop(self) -> None:
        localservices.stop_all([self.master, self.replica, self.sentinel])


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    root = Path(tempfile.mkdtemp(prefix="finex-sentinel-"))
    s = SentinelSet(root)
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_sentinel_failover_mid_backlog(
    sentinels: SentinelSet, chaos_env: dict[str, str], chaos_services: Services
) -> None:
    env = {**chaos_env, "REDIS_URL": sentinels.url}
    trial = Trial(env)
    try:
        trial.enqueue(JOBS, hold=0.3)
        time.sleep(0.5)  # the backlog has reached the replica
        trial.start_fleet()
        trial.wait_progress(3)
        affected = trial.active()
        old = sentinels.master_port()
        sentinels.kill_master()
        killed = time.monotonic()
        wait_for("the Sentinel to promote the replica", lambda: sentinels.master_port() != old, 30)
        promoted = time.monotonic() - killed
        done = trial.wait_done(affected)
        trial.wait_all_done()
        ledger = trial.record(
            "Sentinel failover (master SIGKILL)",
            len(affected),
            killed,
            done,
            allow_duplicates=True,
            note=f"promoted in {promoted:.1f}s; a rerun = a completion not yet replicated",
        )
        assert len(ledger.duplicated) <= len(affected) + 4, ledger
    finally:
        trial.close()
