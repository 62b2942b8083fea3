"""Benchmarks: our worker and batching against baselines measured in the same run.

    .venv/bin/python bench/run.py [--noop-jobs 2000] [--rq-noop-jobs 300] [--fast-unsafe] ...

Starts its own Redis and PostgreSQL on loopback (``finex_workers.dev.localservices``), then:

1. no-op jobs/s: one (and two) of our FinexWorker processes (``finex workers start --burst``)
   against one (and two) plain forking ``rq worker --burst`` processes, each on its own Redis db;
2. Redis commands (``INFO commandstats``) and round trips (bench/rtt.py) per job for the same
   drains;
3. matrix pairs/s from enqueue to rows in PostgreSQL: our batched matrix jobs, against one naive
   job per pair (bench/naive_jobs.py), against a plain binary COPY of the same rows.

Every figure is wall-clock time on this machine, printed with its ratio to the baseline run
seconds earlier, so the ratios hold even though the absolute numbers move between machines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from harness import (
    DRAIN_TIMEOUT,
    ROOT,
    Bench,
    Drain,
    enqueue_noops,
    ratio,
    say,
    table,
    top_commands,
)
from rq import Queue
from rq.registry import FinishedJobRegistry

from finex_workers import control, domain
from finex_workers.core.settings import Settings
from finex_workers.dev import localservices
from finex_workers.infra import migrate
from finex_workers.runtime import enqueue

NAIVE = "bench.naive_jobs.naive_pair_job"
COPY_TYPES = ["int8", "int8", "float8", "float8", "float8", "float8", "float8", "timestamptz"]
COLUMNS = (
    "asset_id, scenario_id, shock, vol_scale, probability, impact, weighted_impact, computed_at"
)


# --- 1 and 2: no-op jobs ------------------------------------------------------------------------


def bench_noop(b: Bench, ours_jobs: int, rq_jobs: int, procs: int) -> tuple[Drain, Drain]:
    """Drain no-op jobs with `procs` of our worker processes, then with `procs` rq workers."""
    say(f"no-op: {ours_jobs} jobs, {procs} FinexWorker process(es)")
    ids = enqueue_noops(b.redis(0), "growth", ours_jobs)
    label = f"ours-noop-{procs}"
    env = b.env(0, GROWTH_WORKER_CONCURRENCY=str(procs))
    ours = b.drain(label, [b.finex_argv(label, "growth")], env, 0, "growth", ids)
    say(f"no-op: {rq_jobs} jobs, {procs} plain `rq worker` process(es)")
    ids = enqueue_noops(b.redis(1), "growth", rq_jobs)
    label = f"rq-noop-{procs}"
    argvs = [b.rq_argv(label, 1, "growth") for _ in range(procs)]
    theirs = b.drain(label, argvs, b.env(1), 1, "growth", ids)
    return ours, theirs


# --- 3: matrix ----------------------------------------------------------------------------------


@dataclass
class Matrix:
    ours_pairs: int
    ours_seconds: float
    ours_busy: float
    naive_pairs: int
    naive_seconds: float
    naive_busy: float
    copy_pairs: int
    copy_seconds: float
    warm_ours_seconds: float
    warm_naive_seconds: float


def empty_table(db: psycopg.Connection[Any]) -> None:
    """Start a variant from no rows and a fresh checkpoint, so none pays for another's writes."""
    db.execute("TRUNCATE impact_scores")
    db.execute("CHECKPOINT")


def expect_rows(db: psycopg.Connection[Any], expected: int, variant: str) -> None:
    row = db.execute("SELECT count(*) FROM impact_scores").fetchone()
    assert row is not None
    if row[0] != expected:
        raise RuntimeError(f"{variant}: {row[0]} rows, expected {expected}")


def warm_drain(
    b: Bench,
    label: str,
    env: dict[str, str],
    db: int,
    procs: int,
    enqueue_jobs: Callable[[], list[str]],
) -> float:
    """Seconds from the first enqueue to the last job finished, with the workers already running.

    What production sees: the fleet is up and idle, work arrives. `finex workers start` (not
    --burst) is started first; timing begins once all `procs` workers are registered and idle.
    """
    conn = b.redis(db)
    argv = [sys.executable, "-m", "finex_workers.cli", "workers", "start", "--worker", "matrix"]
    with (b.workdir / f"{label}.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while len(control.live_workers(conn, "matrix")) < procs:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{label}: workers did not start; see {b.workdir}")
            time.sleep(0.05)
        time.sleep(0.5)  # every worker is idle, blocked waiting for work
        finished = FinishedJobRegistry("matrix", connection=conn)
        started = time.perf_counter()
        ids = enqueue_jobs()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while finished.count < len(ids):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{label}: {finished.count} of {len(ids)} jobs finished")
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        say(f"{label}: {len(ids)} jobs in {seconds:.3f}s")
        return seconds
    finally:
        proc.terminate()
        proc.wait(60)
        conn.close()


def bench_matrix(b: Bench, assets: int, scenarios: int, naive_assets: int, procs: int) -> Matrix:
    """Ours (batched jobs) vs one job per pair vs a binary COPY of the same rows."""
    with psycopg.connect(b.pg_url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS finex_bench")
        admin.execute("CREATE DATABASE finex_bench")
    b.database_url = b.pg_url.rsplit("/", 1)[0] + "/finex_bench"
    migrate.migrate(b.database_url)
    env = b.env(2, MATRIX_WORKER_CONCURRENCY=str(procs))
    settings = Settings.from_env(env)
    rconn = b.redis(2)
    with psycopg.connect(b.database_url, autocommit=True) as db:
        say(f"matrix: seeding {assets} assets x {scenarios} scenarios")
        domain.seed(db, assets=assets, scenarios=scenarios, days=30)
        chunks = domain.asset_ids(db, chunk=settings.matrix_chunk)
        scenario_ids = domain.scenario_ids(db)
        pairs = sum(map(len, chunks)) * len(scenario_ids)
        db.execute("CHECKPOINT")

        say(f"matrix ours: {len(chunks)} jobs of <= {settings.matrix_chunk} assets, {procs} procs")

        def enqueue_ours() -> list[str]:
            return [enqueue.matrix_rows(rconn, settings, chunk).job_id for chunk in chunks]

        rconn.flushdb()
        started = time.perf_counter()
        ids = enqueue_ours()
        argv = b.finex_argv("ours-matrix", "matrix")
        ours = b.drain("ours-matrix", [argv], env, 2, "matrix", ids)
        ours_seconds = time.perf_counter() - started
        expect_rows(db, pairs, "ours")
        rows = db.execute(f"SELECT {COLUMNS} FROM impact_scores ORDER BY 1, 2").fetchall()

        say("matrix ours, warm workers")
        empty_table(db)
        rconn.flushdb()
        warm_ours = warm_drain(b, "ours-matrix-warm", env, 2, procs, enqueue_ours)
        expect_rows(db, pairs, "ours, warm")

        subset = [a for chunk in chunks for a in chunk][:naive_assets]
        naive_pairs = len(subset) * len(scenario_ids)
        say(f"matrix naive: {naive_pairs} one-pair jobs, {procs} procs")
        empty_table(db)

        def enqueue_naive() -> list[str]:
            data = [
                Queue.prepare_data(
                    NAIVE, kwargs={"asset_id": a, "scenario_id": s}, job_id=f"naive-{a}-{s}"
                )
                for a in subset
                for s in scenario_ids
            ]
            return [job.id for job in Queue("matrix", connection=rconn).enqueue_many(data)]

        rconn.flushdb()
        started = time.perf_counter()
        ids = enqueue_naive()
        argv = b.finex_argv("naive-matrix", "matrix")
        naive = b.drain("naive-matrix", [argv], env, 2, "matrix", ids)
        naive_seconds = time.perf_counter() - started
        say(f"naive-matrix: {len(ids)} jobs in {naive_seconds:.3f}s, workers started included")
        expect_rows(db, naive_pairs, "naive")

        say("matrix naive, warm workers")
        empty_table(db)
        rconn.flushdb()
        warm_naive = warm_drain(b, "naive-matrix-warm", env, 2, procs, enqueue_naive)
        expect_rows(db, naive_pairs, "naive, warm")

        say(f"matrix COPY: {len(rows)} rows")
        empty_table(db)
        started = time.perf_counter()
        with db.transaction(), db.cursor() as cur:
            copy_sql = f"COPY impact_scores ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
            with cur.copy(copy_sql) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
        copy_seconds = time.perf_counter() - started
        expect_rows(db, pairs, "COPY")
    rconn.close()
    return Matrix(
        pairs,
        ours_seconds,
        ours.busy,
        naive_pairs,
        naive_seconds,
        naive.busy,
        len(rows),
        copy_seconds,
        warm_ours,
        warm_naive,
    )


# --- report -------------------------------------------------------------------------------------


def noop_rows(ours: Drain, theirs: Drain, procs: int) -> list[list[str]]:
    p = f"{procs} proc" + ("s" if procs > 1 else "")
    return [
        [
            f"no-op jobs/s, {p}, wall (start-up included)",
            f"{ours.rate:,.0f} ({ours.jobs} jobs)",
            f"{theirs.rate:,.1f} ({theirs.jobs} jobs)",
            ratio(ours.rate, theirs.rate),
            ">= 10x" if procs == 1 else "",
        ],
        [
            f"no-op jobs/s, {p}, first start to last end",
            f"{ours.busy_rate:,.0f}",
            f"{theirs.busy_rate:,.1f}",
            ratio(ours.busy_rate, theirs.busy_rate),
            "",
        ],
        [
            f"Redis commands per job, {p}",
            f"{ours.commands / ours.jobs:.1f}",
            f"{theirs.commands / theirs.jobs:.1f}",
            ratio(ours.commands / ours.jobs, theirs.commands / theirs.jobs),
            "",
        ],
        [
            f"Redis round trips per job, {p}",
            f"{ours.round_trips / ours.jobs:.1f}",
            f"{theirs.round_trips / theirs.jobs:.1f}",
            ratio(ours.round_trips / ours.jobs, theirs.round_trips / theirs.jobs),
            "",
        ],
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop-jobs", type=int, default=2000, help="no-op jobs for our worker")
    parser.add_argument("--rq-noop-jobs", type=int, default=300, help="no-op jobs for rq worker")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="processes per side")
    parser.add_argument("--assets", type=int, default=2000)
    parser.add_argument("--scenarios", type=int, default=20)
    parser.add_argument("--naive-assets", type=int, default=100, help="assets for the naive run")
    parser.add_argument("--matrix-procs", type=int, default=2, help="worker processes (matrix)")
    parser.add_argument(
        "--fast-unsafe",
        action="store_true",
        help="run PostgreSQL with fsync=off, synchronous_commit=off, full_page_writes=off",
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="finex-bench-"))
    workdir.chmod(0o755)  # postgres runs as its own user when we are root
    services: list[localservices.LocalService] = []
    try:
        say(f"starting Redis and PostgreSQL under {workdir}")
        services.append(localservices.start_redis(workdir / "redis"))
        services.append(localservices.start_postgres(workdir / "pg", fast_unsafe=args.fast_unsafe))
        b = Bench(workdir, services[0].url.rsplit("/", 1)[0], services[1].url)
        noops = [(p, *bench_noop(b, args.noop_jobs, args.rq_noop_jobs, p)) for p in args.procs]
        matrix = bench_matrix(b, args.assets, args.scenarios, args.naive_assets, args.matrix_procs)
    finally:
        localservices.stop_all(services)
    shutil.rmtree(workdir, ignore_errors=True)

    load = os.getloadavg()[0]
    durability = "fsync off (--fast-unsafe)" if args.fast_unsafe else "fsync on (defaults)"
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f}; PostgreSQL {durability}")
    rows = [["figure", "ours", "baseline", "ratio", "goal"]]
    for procs, ours, theirs in noops:
        rows += noop_rows(ours, theirs, procs)
    m = matrix
    ours_rate = m.ours_pairs / m.ours_seconds
    naive_rate = m.naive_pairs / m.naive_seconds
    copy_rate = m.copy_pairs / m.copy_seconds
    warm_ours_rate = m.ours_pairs / m.warm_ours_seconds
    warm_naive_rate = m.naive_pairs / m.warm_naive_seconds
    mp = f"{args.matrix_procs} procs"
    rows += [
        [
            f"matrix pairs/s, enqueue to rows, {mp} vs naive",
            f"{ours_rate:,.0f} ({m.ours_pairs} pairs)",
            f"{naive_rate:,.0f} ({m.naive_pairs} 1-pair jobs)",
            ratio(ours_rate, naive_rate),
            ">= 50x",
        ],
        [
            "matrix pairs/s, first job start to last end",
            f"{m.ours_pairs / m.ours_busy:,.0f}",
            f"{m.naive_pairs / m.naive_busy:,.0f}",
            ratio(m.ours_pairs / m.ours_busy, m.naive_pairs / m.naive_busy),
            "",
        ],
        [
            f"matrix pairs/s, enqueue to rows, {mp} vs COPY",
            f"{ours_rate:,.0f}",
            f"{copy_rate:,.0f} (binary COPY, 1 conn)",
            ratio(ours_rate, copy_rate),
            ">= 0.3x",
        ],
        [
            f"matrix pairs/s, warm workers, {mp} vs naive",
            f"{warm_ours_rate:,.0f}",
            f"{warm_naive_rate:,.0f}",
            ratio(warm_ours_rate, warm_naive_rate),
            ">= 50x",
        ],
        [
            f"matrix pairs/s, warm workers, {mp} vs COPY",
            f"{warm_ours_rate:,.0f}",
            f"{copy_rate:,.0f}",
            ratio(warm_ours_rate, copy_rate),
            ">= 0.3x",
        ],
    ]
    print("baseline: plain forking `rq worker` for no-op figures; as labelled for matrix\n")
    print(table(rows))
    print("\ntop Redis commands per job (INFO commandstats, whole drain incl. start-up):")
    for _, ours, theirs in noops:
        print(top_commands(ours))
        print(top_commands(theirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
