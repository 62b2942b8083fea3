"""Run `finex workers start` as a real subprocess for tests, and wait on its effects."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import redis

from finex_workers import control
from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import get_queue
from finex_workers.runtime import enqueue
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
#: Every process of a stopped fleet (or of a burst fleet whose queue is empty) exits within this
#: many seconds: nothing on the stop path waits on purpose, so this is a margin for a slow and
#: loaded machine, not a wait (tests/integration/test_worker_stop.py).
STOP_BOUND = 10.0


class Fleet:
    """One supervisor process; stops it (SIGTERM, then SIGKILL) on close."""

    def __init__(
        self,
        queues: list[str],
        env: dict[str, str],
        *,
        burst: bool = False,
        args: Sequence[str] = (),
    ) -> None:
        self.queues = queues
        full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "finex_workers.cli", "workers", "start"]
        if len(queues) == 1:
            argv += ["--worker", queues[0]]
        if burst:
            argv.append("--burst")
        argv += list(args)
        # A file, not a pipe: nobody reads the log while the fleet runs, and a full pipe would
        # block every worker that logs (three lines per job).
        self.log = tempfile.NamedTemporaryFile(prefix="finex-fleet-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            env=full_env,
            start_new_session=True,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, conn: redis.Redis, per_queue: int = 1, timeout: float = 60.0) -> None:
        for queue in self.queues:
            wait_for(
                f"{per_queue} live worker(s) on {queue}",
                lambda q=queue: self._exited() or len(control.live_workers(conn, q)) >= per_queue,
                timeout,
            )
            assert not self._exited(), f"the fleet exited:\n{self.output()[-3000:]}"

    def _exited(self) -> bool:
        return self.proc.poll() is not None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the supervisor and its workers; return once none of them runs any more.

        A SIGKILLed process still runs for a moment while the kernel tears it down, and a sweep
        in that moment rightly sees its pid alive. Zombies count as gone, as in pid_alive.
        """
        self.signal_group(signal.SIGKILL)
        self.proc.wait()
        wait_for("the fleet's processes to be gone", lambda: not self._running_in_group())

    def _running_in_group(self) -> list[int]:
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # exited while we looked
            state, pgrp = fields[0], int(fields[2])
            if pgrp == self.proc.pid and state != "Z":
                pids.append(int(stat.parent.name))
        return pids

    def output(self) -> str:
        """What the supervisor and its workers logged so far."""
        return Path(self.log.name).read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait()
        self.signal_group(signal.SIGKILL)  # stragglers in the group, if any
        self.log.close()


def probe(conn: redis.Redis, settings: Settings, queue: str, probe_id: str, hold: float = 0) -> str:
    """Enqueue a probe job (a row in finex_probes, in a transaction held open for `hold` s)."""
    return enqueue.enqueue_unique(
        get_queue(queue, conn),
        "finex_workers.runtime.jobs.probe_job",
        {"probe_id": probe_id, "hold_seconds": hold},
        f"probe-{probe_id}",
        settings,
    ).job_id
