"""The worker's hot path against rq's own workers and a floor, all measured in one run.

    .venv/bin/python bench/hotpath.py [--jobs 2000] [--procs 1] [--real-procs 2] [--profile]

Starts its own Redis and PostgreSQL on loopback, then, each variant on its own Redis db:

1. no-op jobs, one process: ours (``finex workers start --burst``), rq's ``SimpleWorker``
   (``rq worker -w rq.worker.SimpleWorker --burst``), rq's default forking ``Worker``, and the
   floor (bench/floor.py: a minimal Lua claim + ack loop). Ours and rq's log at INFO to a file.
   Figures: jobs/s (wall, start-up included; and first start to last end), Redis round trips
   (bench/rtt.py) and commands (INFO commandstats) per job. Ours and SimpleWorker alternate
   ``--repeat`` times (default 3) and the medians are reported.
2. real jobs, end to end (enqueue to rows in PostgreSQL): growth jobs for every seeded asset and
   probability jobs for every scenario, drained by ours and by rq's SimpleWorker with the same
   number of processes, running the same job functions. The rows are checked after each drain.
3. ``--profile``: our worker and rq's SimpleWorker each drain no-op jobs in this process under
   cProfile; the top functions by own time are printed as microseconds per job.

Every figure is printed with its ratio to the baseline run seconds earlier in the same run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from harness import (
    DRAIN_TIMEOUT,
    ROOT,
    RTT,
    Bench,
    Drain,
    enqueue_noops,
    ratio,
    say,
    table,
    top_commands,
)
from rq import Queue, SimpleWorker
from rq.job import Job

from finex_workers import domain
from finex_workers.dev import localservices
from finex_workers.infra import migrate
from finex_workers.runtime import enqueue
from finex_workers.runtime.worker import FinexWorker

SIMPLE = "rq.worker.SimpleWorker"


def floor_drain(b: Bench, db: int, count: int) -> Drain:
    """The floor: bench/floor.py drains `count` bare ids with a Lua claim and a Lua ack."""
    conn = b.redis(db)
    conn.flushdb()
    conn.rpush("floor", *[f"job-{i}" for i in range(count)])
    rtt_file, out = b.workdir / "floor.rtt", b.workdir / "floor.out"
    rtt_file.unlink(missing_ok=True)
    conn.config_resetstat()
    argv = [sys.executable, str(RTT), str(rtt_file), "floor", f"{b.redis_url}/{db}", "floor"]
    launched = time.perf_counter()
    subprocess.run([*argv, str(out)], check=True, timeout=DRAIN_TIMEOUT, cwd=ROOT / "bench")
    wall = time.perf_counter() - launched
    stats = conn.info("commandstats")
    jobs, first, last = out.read_text().split()
    if int(jobs) != count or int(conn.get("floor:done") or 0) != count:
        raise RuntimeError(f"floor: {jobs} of {count} ids acknowledged")
    by_command = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    trips = sum(int(line.split()[1]) for line in rtt_file.read_text().splitlines())
    return Drain(
        "floor", count, launched, wall, float(last) - float(first), sum(by_command.values()),
        trips, by_command,
    )  # fmt: skip


def bench_noop(b: Bench, jobs: int, forking_jobs: int, procs: int, repeat: int) -> dict[str, Drain]:
    """Ours and SimpleWorker alternate `repeat` times (the median of each is kept, so a burst of
    load on a shared machine hits both sides alike); the forking Worker and the floor run once."""
    runs: dict[str, list[Drain]] = {"ours": [], "simple": []}
    for n in range(repeat):
        say(f"no-op {n + 1}/{repeat}: {jobs} jobs, ours with {procs} process(es)")
        ids = enqueue_noops(b.redis(0), "growth", jobs)
        env = b.env(0, GROWTH_WORKER_CONCURRENCY=str(procs))
        runs["ours"].append(
            b.drain("ours", [b.finex_argv("ours", "growth")], env, 0, "growth", ids)
        )
        say(f"no-op {n + 1}/{repeat}: {jobs} jobs, rq SimpleWorker x{procs}")
        ids = enqueue_noops(b.redis(1), "growth", jobs)
        argvs = [b.rq_argv("simple", 1, "growth", SIMPLE) for _ in range(procs)]
        runs["simple"].append(b.drain("simple", argvs, b.env(1), 1, "growth", ids))
    out = {key: median_drain(drains) for key, drains in runs.items()}
    say(f"no-op: {forking_jobs} jobs, rq forking Worker x{procs}")
    ids = enqueue_noops(b.redis(2), "growth", forking_jobs)
    argvs = [b.rq_argv("forking", 2, "growth") for _ in range(procs)]
    out["forking"] = b.drain("forking", argvs, b.env(2), 2, "growth", ids)
    say(f"no-op: floor, {jobs * 2} ids")
    out["floor"] = floor_drain(b, 3, jobs * 2)
    return out


def median_drain(drains: Sequence[Drain]) -> Drain:
    """The drain with the median wall rate; its steady-state time is replaced by the median's."""
    by_wall = sorted(drains, key=lambda d: d.rate)
    chosen = by_wall[len(by_wall) // 2]
    busy = sorted(d.busy for d in drains)[len(drains) // 2]
    return Drain(
        chosen.label, chosen.jobs, chosen.launched, chosen.wall, busy, chosen.commands,
        chosen.round_trips, chosen.by_command,
    )  # fmt: skip


def noop_report(d: dict[str, Drain], procs: int) -> list[list[str]]:
    ours, simple = d["ours"], d["simple"]
    p = f"{procs} proc" + ("s" if procs > 1 else "")
    rows = []
    for label, key in (
        ("SimpleWorker", "simple"),
        ("forking Worker", "forking"),
        ("floor", "floor"),
    ):
        other = d[key]
        rows += [
            [
                f"no-op jobs/s, {p}, wall, vs {label}",
                f"{ours.rate:,.0f}",
                f"{other.rate:,.0f} ({other.jobs} jobs)",
                ratio(ours.rate, other.rate),
                ">= 3x" if key == "simple" else "",
            ],
            [
                f"no-op jobs/s, {p}, first start to last end, vs {label}",
                f"{ours.busy_rate:,.0f}",
                f"{other.busy_rate:,.0f}",
                ratio(ours.busy_rate, other.busy_rate),
                ">= 3x" if key == "simple" else "",
            ],
        ]
    for key in ("simple", "forking", "floor"):
        other = d[key]
        rows.append(
            [
                f"Redis round trips per job, vs {key}",
                f"{ours.round_trips / ours.jobs:.2f}",
                f"{other.round_trips / other.jobs:.2f}",
                ratio(ours.round_trips / ours.jobs, other.round_trips / other.jobs),
                "<= 4" if key == "simple" else "",
            ]
        )
    rows.append(
        [
            "Redis commands per job, vs SimpleWorker",
            f"{ours.commands / ours.jobs:.1f}",
            f"{simple.commands / simple.jobs:.1f}",
            ratio(ours.commands / ours.jobs, simple.commands / simple.jobs),
            "",
        ]
    )
    return rows


# --- real jobs ------------------------------------------------------------------------------


def reset_results(db: psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute("UPDATE assets SET growth_rate = NULL, volatility = NULL, growth_updated_at = NULL")
    db.execute(
        "UPDATE scenarios SET probability = prior_probability, probability_updated_at = NULL"
    )
    db.execute("CHECKPOINT")


def real_drain(
    b: Bench, label: str, db: int, queue: str, ids: Sequence[int], procs: int, simple: bool
) -> Drain:
    """Enqueue one job per id through the production enqueue path (timed), then drain."""
    conn = b.redis(db)
    conn.flushdb()
    from finex_workers.core.settings import Settings

    settings = Settings.from_env(b.env(db))
    started = time.perf_counter()
    put = enqueue.growth if queue == "growth" else enqueue.probability
    job_ids = [put(conn, settings, i).job_id for i in ids]
    if simple:
        argvs = [b.rq_argv(label, db, queue, SIMPLE) for _ in range(procs)]
        env = b.env(db)
    else:
        argvs = [b.finex_argv(label, queue)]
        env = b.env(db, **{f"{queue.upper()}_WORKER_CONCURRENCY": str(procs)})
    drain = b.drain(label, argvs, env, db, queue, job_ids)
    drain.wall += drain.launched - started  # from the first enqueue
    return drain


def bench_real(b: Bench, assets: int, scenarios: int, procs: int) -> dict[str, Drain]:
    with psycopg.connect(b.database_url, autocommit=True) as db:
        say(f"real jobs: seeding {assets} assets x {scenarios} scenarios")
        domain.seed(db, assets=assets, scenarios=scenarios, replace=True)
        asset_ids = [i for chunk in domain.asset_ids(db, chunk=10_000) for i in chunk]
        scenario_ids = domain.scenario_ids(db)
        out: dict[str, Drain] = {}
        for queue, ids, column in (
            (
                "growth",
                asset_ids,
                "SELECT count(*) FROM assets WHERE growth_updated_at IS NOT NULL",
            ),
            (
                "probability",
                scenario_ids,
                "SELECT count(*) FROM scenarios WHERE probability_updated_at IS NOT NULL",
            ),
        ):
            expected = len(ids) if queue == "growth" else None
            for who, db_no, simple in (("ours", 4, False), ("simple", 5, True)):
                reset_results(db)
                say(f"real jobs: {len(ids)} {queue} jobs, {who}, {procs} process(es)")
                drain = real_drain(b, f"{who}-{queue}", db_no, queue, ids, procs, simple)
                row = db.execute(column).fetchone()
                written = int(row[0]) if row else 0
                # Every asset has prices, so every growth row changes. A scenario without
                # evidence keeps its prior (no write), so both sides must change the same rows.
                expected = written if expected is None and written else expected
                if written != expected:
                    raise RuntimeError(f"{who} {queue}: {written} rows updated, want {expected}")
                out[f"{who}-{queue}"] = drain
    return out


def real_report(d: dict[str, Drain], procs: int) -> list[list[str]]:
    rows = []
    for queue in ("growth", "probability"):
        ours, simple = d[f"ours-{queue}"], d[f"simple-{queue}"]
        rows += [
            [
                f"{queue} jobs/s, {procs} procs, enqueue to rows, vs SimpleWorker",
                f"{ours.rate:,.0f} ({ours.jobs} jobs)",
                f"{simple.rate:,.0f}",
                ratio(ours.rate, simple.rate),
                "",
            ],
            [
                f"{queue} jobs/s, first start to last end, vs SimpleWorker",
                f"{ours.busy_rate:,.0f}",
                f"{simple.busy_rate:,.0f}",
                ratio(ours.busy_rate, simple.busy_rate),
                "",
            ],
            [
                f"{queue}: Redis round trips per job, vs SimpleWorker",
                f"{ours.round_trips / ours.jobs:.2f}",
                f"{simple.round_trips / simple.jobs:.2f}",
                ratio(ours.round_trips / ours.jobs, simple.round_trips / simple.jobs),
                "",
            ],
        ]
    return rows


# --- profile --------------------------------------------------------------------------------


def profile(b: Bench, jobs: int, top: int = 18) -> str:
    """Drain no-op jobs in this process under cProfile; the top functions by own time."""
    out = []
    for label, cls in (("ours (FinexWorker)", FinexWorker), ("rq SimpleWorker", SimpleWorker)):
        conn = b.redis(6)
        enqueue_noops(conn, "growth", jobs)
        worker = cls([Queue("growth", connection=conn)], connection=conn)
        prof = cProfile.Profile()
        started = time.perf_counter()
        prof.runcall(worker.work, burst=True, logging_level="WARNING")
        took = time.perf_counter() - started
        stats = pstats.Stats(prof)
        entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
        out.append(
            f"{label}: {jobs} jobs in {took:.2f}s under cProfile, {took / jobs * 1e6:.0f} us/job"
        )
        out.append(f"  {'own us/job':>10}  {'calls/job':>9}  function")
        for (path, line, func), (_, calls, tottime, _cum, _callers) in entries:
            where = f"{Path(path).name}:{line}({func})"
            out.append(f"  {tottime / jobs * 1e6:>10.1f}  {calls / jobs:>9.2f}  {where}")
        done = sum(1 for j in Job.fetch_many([f"noop-{i}" for i in range(jobs)], conn) if j)
        out.append(f"  ({done} job hashes left with results)")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="no-op jobs per variant")
    parser.add_argument("--forking-jobs", type=int, default=300, help="no-op jobs, forking rq")
    parser.add_argument("--procs", type=int, default=1, help="processes per side, no-op")
    parser.add_argument(
        "--repeat", type=int, default=3, help="alternating no-op runs of ours and SimpleWorker"
    )
    parser.add_argument("--real-procs", type=int, default=2, help="processes per side, real jobs")
    parser.add_argument("--assets", type=int, default=1000, help="growth jobs (one per asset)")
    parser.add_argument("--scenarios", type=int, default=300, help="probability jobs")
    parser.add_argument("--profile", action="store_true", help="also profile both workers")
    parser.add_argument("--no-real", action="store_true", help="skip the real-job figures")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="finex-hotpath-"))
    workdir.chmod(0o755)  # postgres runs as its own user when we are root
    services: list[localservices.LocalService] = []
    try:
        say(f"starting Redis and PostgreSQL under {workdir}")
        services.append(localservices.start_redis(workdir / "redis"))
        services.append(localservices.start_postgres(workdir / "pg"))
        b = Bench(workdir, services[0].url.rsplit("/", 1)[0], services[1].url)
        with psycopg.connect(services[1].url, autocommit=True) as pg:
            pg.execute("CREATE DATABASE finex_hotpath")
        b.database_url = services[1].url.rsplit("/", 1)[0] + "/finex_hotpath"
        migrate.migrate(b.database_url)
        noop = bench_noop(b, args.jobs, args.forking_jobs, args.procs, args.repeat)
        real = {} if args.no_real else bench_real(b, args.assets, args.scenarios, args.real_procs)
        prof = profile(b, args.jobs) if args.profile else ""
    finally:
        localservices.stop_all(services)
    shutil.rmtree(workdir, ignore_errors=True)

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    rows = [["figure", "ours", "baseline", "ratio", "goal"], *noop_report(noop, args.procs)]
    if real:
        rows += real_report(real, args.real_procs)
    print(table(rows))
    print("\nRedis commands per job (INFO commandstats, whole drain incl. start-up):")
    for drain in noop.values():
        print(top_commands(drain))
    if prof:
        print("\nprofile (cProfile, no-op jobs, in-process, logging at WARNING):")
        print(prof)
    return 0


if __name__ == "__main__":
    sys.exit(main())
