"""The fleet on the real node: memory under a 10,000-job run, and a restart of a 10,000-job backlog.

    .venv/bin/python bench/node_fleet.py [--jobs 10000] [--concurrency 4]

Starts a control plane with the real node (tests/support/cluster.py), Redis and PostgreSQL for
the Pods, and `helm install`s the chart with the image `make image` built (tests/support/
nodefleet.py, as the node tier does). Then, on the growth queue of one worker Pod:

1. apply -> Ready: from `kubectl apply` of a pool to every worker Pod Ready (its readiness probe
   passes only once a worker of the Pod is live in Redis);
2. a run of N probe jobs (each one INSERT into PostgreSQL), with the resident memory of the
   worker Pod, the operator and the exporter sampled at the start, the middle and the end (the
   exporter is scraped every second meanwhile, as Prometheus would); the drain time gives the
   steady-state throughput;
3. the restart's fixed cost: `finex.io/restart` of the empty queue, annotate to Done;
4. a restart of an N-job backlog: enqueue N, annotate at once, time until every job finished,
   against the ideal of N / throughput + the fixed cost; then the ledger (each job finished
   exactly once, each probe row written once).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rq import Queue  # noqa: E402
from rq.registry import FinishedJobRegistry  # noqa: E402

from finex_workers import control  # noqa: E402
from finex_workers.runtime import recompute  # noqa: E402
from tests.support import cluster as k8s  # noqa: E402
from tests.support import nodefleet  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

POOL = "bench"
PROBE = "finex_workers.runtime.jobs.probe_job"


def say(message: str) -> None:
    print(f"[node-bench] {message}", file=sys.stderr, flush=True)


def pods(fleet: nodefleet.Fleet, selector: str) -> list[dict[str, Any]]:
    items = fleet.json("pods", "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def component(fleet: nodefleet.Fleet, name: str) -> dict[str, Any]:
    [pod] = pods(fleet, f"app.kubernetes.io/component={name}")
    return pod


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def enqueue_probes(fleet: nodefleet.Fleet, prefix: str, count: int) -> list[str]:
    conn = fleet.redis()
    data = [
        Queue.prepare_data(PROBE, kwargs={"probe_id": f"{prefix}-{i}"}, job_id=f"{prefix}-{i}")
        for i in range(count)
    ]
    queue = Queue("growth", connection=conn)
    ids: list[str] = []
    for start in range(0, count, 1000):
        ids += [j.id for j in queue.enqueue_many(data[start : start + 1000])]
    return ids


def restart(fleet: nodefleet.Fleet, value: str) -> float:
    started = time.monotonic()
    fleet.kubectl("annotate", "--overwrite", "fwp", POOL, f"finex.io/restart={value}")

    def done() -> bool:
        status = fleet.json("fwp", POOL).get("status", {}).get("restart", {})
        return status.get("requestedValue") == value and status.get("phase") == "Done"

    wait_for(f"restart {value}", done, timeout=600, every=0.2)
    return time.monotonic() - started


def finished(fleet: nodefleet.Fleet) -> int:
    return FinishedJobRegistry("growth", connection=fleet.redis()).count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes per Pod")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="finex-node-bench-"))
    workdir.chmod(0o755)
    cluster = k8s.start_cluster(nodes=1, real_node=True)
    services = nodefleet.start_services(cluster.gateway_ip, workdir)
    rows: list[tuple[str, str]] = []
    try:
        fleet, took = nodefleet.install(cluster, services)
        rows.append(("helm install --wait (operator, exporter, migration hook)", f"{took:.1f} s"))
        started = time.monotonic()
        nodefleet.apply(fleet, nodefleet.pool_body(fleet, POOL, concurrency=args.concurrency))
        wait_for(
            "every worker Pod Ready",
            lambda: len(w := pods(fleet, f"finex.io/pool={POOL}")) == 3 and all(map(ready, w)),
            timeout=300,
            every=0.1,
        )
        rows.append(
            ("apply of a pool -> its 3 worker Pods Ready", f"{time.monotonic() - started:.1f} s")
        )

        worker = pods(fleet, f"finex.io/pool={POOL},finex.io/queue=growth")[0]
        watched = {"worker Pod": worker, "operator": component(fleet, "operator"),
                   "exporter": component(fleet, "exporter")}  # fmt: skip
        exporter_ip = watched["exporter"]["status"]["podIP"]
        stop_scraping = threading.Event()

        def scrape() -> None:
            while not stop_scraping.wait(1.0):
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://{exporter_ip}:9121/metrics", timeout=5).read()

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        rss: dict[str, list[int]] = {
            name: [nodefleet.rss_bytes(cluster, p)] for name, p in watched.items()
        }
        say(f"run: {args.jobs} probe jobs")
        ids = enqueue_probes(fleet, "run", args.jobs)
        run_start = time.monotonic()
        wait_for("half the run", lambda: finished(fleet) >= args.jobs // 2, timeout=900, every=0.2)
        for name, p in watched.items():
            rss[name].append(nodefleet.rss_bytes(cluster, p))
        wait_for("the run", lambda: finished(fleet) >= args.jobs, timeout=900, every=0.2)
        drain = time.monotonic() - run_start
        for name, p in watched.items():
            rss[name].append(nodefleet.rss_bytes(cluster, p))
        stop_scraping.set()
        throughput = args.jobs / drain
        rows.append(
            (
                f"{args.jobs} probe jobs, 1 Pod x {args.concurrency} workers",
                f"{drain:.1f} s, {throughput:,.0f} jobs/s",
            )
        )
        for name, samples in rss.items():
            mib = " -> ".join(f"{s / 2**20:.1f}" for s in samples)
            growth = (samples[-1] - samples[1]) / 2**20
            rows.append(
                (
                    f"RSS of the {name}, MiB (start -> half -> end)",
                    f"{mib} (second half {growth:+.1f})",
                )
            )

        fixed = restart(fleet, "growth@empty")
        rows.append(("safe restart of an empty queue (fixed cost)", f"{fixed:.1f} s"))
        say(f"restart under a backlog of {args.jobs}")
        fleet.redis().delete(FinishedJobRegistry("growth", connection=fleet.redis()).key)
        backlog_start = time.monotonic()
        backlog = enqueue_probes(fleet, "backlog", args.jobs)
        restart(fleet, "growth@backlog")
        wait_for(
            "the backlog",
            lambda: recompute.outstanding(fleet.redis(), ["growth"]) == 0,
            timeout=900,
            every=0.2,
        )
        total = time.monotonic() - backlog_start
        ideal = args.jobs / throughput + fixed
        rows.append(
            (f"restart under a {args.jobs}-job backlog, enqueue to drained", f"{total:.1f} s")
        )
        rows.append(
            ("  ideal: backlog / throughput + fixed cost", f"{ideal:.1f} s ({total / ideal:.2f}x)")
        )
        conn = fleet.redis()
        done = set(FinishedJobRegistry("growth", connection=conn).get_job_ids())
        lost = [j for j in backlog if j not in done]
        with fleet.db() as db:
            twice = db.execute(
                "SELECT count(*) FROM finex_probes WHERE probe_id LIKE 'backlog-%%' AND runs <> 1"
            ).fetchone()
            written = db.execute(
                "SELECT count(*) FROM finex_probes WHERE probe_id LIKE 'backlog-%%'"
            ).fetchone()
        dlq = control.queue_state(conn, "growth").failed
        rows.append(
            (
                "  lost / run twice / dead-lettered",
                f"{len(lost)} / {twice[0] if twice else '?'} / {dlq}"
                f" (probe rows {written[0] if written else '?'})",
            )
        )
        assert len(ids) == args.jobs
    finally:
        cluster.stop()
        services.redis.stop()
        services.pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
