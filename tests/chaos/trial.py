"""One chaos trial: a backlog of probe jobs, a live fleet, a fault, then the ledger and a row."""

from __future__ import annotations

import time

import psycopg
import redis
from rq.registry import StartedJobRegistry

from finex_workers.core.settings import Settings
from finex_workers.infra.redisconn import redis_from_url, text
from finex_workers.infra.rqkeys import active_bounds
from tests.chaos.ledger import ROWS, Ledger, Row, check
from tests.support.fleet import Fleet, probe

QUEUE = "growth"


def _quiet(fn, default=None):
    """fn(), or default while Redis or PostgreSQL is restarting."""
    try:
        return fn()
    except (redis.ConnectionError, redis.TimeoutError, psycopg.OperationalError):
        return default


class Trial:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.settings = Settings.from_env(env)
        self.conn = redis_from_url(env["REDIS_URL"])
        self.database_url = env["DATABASE_URL"]
        self.probes: dict[str, str] = {}
        self.fleets: list[Fleet] = []

    def enqueue(self, count: int, hold: float = 0.2, prefix: str = "p") -> None:
        for i in range(count):
            pid = f"{prefix}{i}"
            self.probes[pid] = probe(self.conn, self.settings, QUEUE, pid, hold)

    def start_fleet(self, wait: bool = True) -> Fleet:
        fleet = Fleet([QUEUE], self.env)
        self.fleets.append(fleet)
        if wait:
            fleet.wait_ready(self.conn, per_queue=2)
        return fleet

    def db(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True)

    def finished_count(self) -> int:
        def count() -> int:
            with self.db() as db:
                row = db.execute(
                    "SELECT count(*) FROM finex_probes WHERE finished_at IS NOT NULL"
                ).fetchone()
                return int(row[0]) if row else 0

        return int(_quiet(count, -1))

    def wait_progress(self, done: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.finished_count() < done:
            assert time.monotonic() < deadline, f"fewer than {done} jobs finished in {timeout}s"
            time.sleep(0.05)

    def active(self) -> list[str]:
        key = StartedJobRegistry(QUEUE, self.conn).key
        return [
            text(e).partition(":")[0]
            for e in self.conn.zrangebyscore(key, *active_bounds(time.time()))
        ]

    def ledger(self) -> Ledger:
        with self.db() as db:
            return check(self.conn, db, QUEUE, self.probes)

    def wait_done(self, ids: list[str], timeout: float = 180) -> float:
        """Wait until every job in ids has finished; returns the monotonic time it happened."""
        wanted = {p for p, j in self.probes.items() if j in set(ids)}
        deadline = time.monotonic() + timeout
        while True:

            def finished() -> set[str]:
                with self.db() as db:
                    rows = db.execute(
                        "SELECT probe_id FROM finex_probes "
                        "WHERE probe_id = ANY(%s) AND finished_at IS NOT NULL",
                        (list(wanted),),
                    ).fetchall()
                    return {str(r[0]) for r in rows}

            if wanted <= (_quiet(finished, set()) or set()):
                return time.monotonic()
            if time.monotonic() > deadline:
                missing = sorted(wanted - (_quiet(finished, set()) or set()))
                lines = [ln for f in self.fleets for ln in f.output().splitlines()]
                ids = [self.probes[m] for m in missing]
                logs = "\n".join(ln for ln in lines if any(i in ln for i in ids))
                logs += "\n" + "\n".join(lines[-30:])
                raise AssertionError(f"jobs {missing} not done in {timeout}s; fleet log:\n{logs}")
            time.sleep(0.05)

    def wait_all_done(self, timeout: float | None = None) -> float:
        """The whole backlog; the default allows 2 workers at 0.5 s a job, plus two minutes."""
        if timeout is None:
            timeout = 120 + 0.25 * len(self.probes)
        return self.wait_done(list(self.probes.values()), timeout)

    def record(
        self,
        fault: str,
        affected: int,
        fault_end: float,
        done_at: float,
        *,
        allow_duplicates: bool = False,
        note: str = "",
    ) -> Ledger:
        ledger = self.ledger()
        ROWS.append(
            Row(
                fault,
                affected,
                len(ledger.lost),
                len(ledger.duplicated),
                len(ledger.dead_lettered),
                max(0.0, done_at - fault_end),
                note,
            )
        )
        assert ledger.ok(allow_duplicates=allow_duplicates), ledger
        assert not ledger.pending, ledger  # everything drained
        return ledger

    def close(self) -> None:
        for fleet in self.fleets:
            fleet.close()
        self.conn.close()
