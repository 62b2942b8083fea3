"""Scrape cost of the queue exporter with 0 and with 100k jobs: it must not grow with jobs.

    .venv/bin/python bench/exporter_scrape.py [--jobs 100000] [--scrapes 50]

Starts its own redis-server on a free loopback port, serves the real exporter registry over HTTP
(the code `finex exporter` runs) and times full GET /metrics scrapes:

1. empty Redis;
2. the same, after enqueueing --jobs real RQ jobs onto the matrix queue (paused, so they wait),
   plus --jobs entries in each of the DLQ, the finished registry and the started registry
   (expired heartbeats), so every structure the exporter reads is large.

Prints the median scrape time of each and their ratio. A ratio near 1 shows the scrape is
O(queues) (plus O(live workers)), not O(jobs).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client import start_http_server
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from finex_workers import control
from finex_workers.core.names import QUEUE_NAMES
from finex_workers.dev import localservices
from finex_workers.infra.redisconn import redis_from_url
from finex_workers.observability.metrics import exporter_registry


def time_scrapes(url: str, n: int) -> float:
    """Median seconds per full scrape (after one warm-up)."""
    urllib.request.urlopen(url).read()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        urllib.request.urlopen(url).read()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def fill(conn, jobs: int) -> None:
    control.pause(conn, "matrix")
    queue = Queue("matrix", connection=conn)
    batch = 2000
    for start in range(0, jobs, batch):
        with conn.pipeline() as pipe:
            datas = [
                Queue.prepare_data(
                    "finex_workers.runtime.jobs.probe_job",
                    kwargs={"probe_id": f"bench-{i}"},
                    job_id=f"bench-{i}",
                )
                for i in range(start, min(start + batch, jobs))
            ]
            queue.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
    now = time.time()
    for registry, score in (
        (FailedJobRegistry("matrix", conn), now + 86400),
        (FinishedJobRegistry("matrix", conn), now + 3600),
        (StartedJobRegistry("matrix", conn), now - 60),  # abandoned: heartbeats expired
    ):
        for start in range(0, jobs, 10000):
            conn.zadd(
                registry.key,
                {f"dead-{i}:x": score + i * 1e-6 for i in range(start, min(start + 10000, jobs))},
            )
    conn.hset("finex:stats:matrix", mapping={"completed": jobs, "failed": jobs})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="finex-bench-exporter-"))
    redis_svc = localservices.start_redis(workdir / "redis")
    try:
        conn = redis_from_url(redis_svc.url)
        port = localservices.free_port()
        registry = exporter_registry(lambda: redis_from_url(redis_svc.url), QUEUE_NAMES)
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        url = f"http://127.0.0.1:{port}/metrics"

        empty = time_scrapes(url, args.scrapes)
        t0 = time.perf_counter()
        fill(conn, args.jobs)
        filled_in = time.perf_counter() - t0
        state = control.queue_state(conn, "matrix")
        assert state.waiting == args.jobs, state
        full = time_scrapes(url, args.scrapes)
        server.shutdown()

        print(f"exporter scrape, {len(QUEUE_NAMES)} queues, median of {args.scrapes}:")
        print(f"  0 jobs:                          {empty * 1000:8.2f} ms")
        print(
            f"  {args.jobs} waiting (+{args.jobs} DLQ, finished, stale started): "
            f"{full * 1000:8.2f} ms   (filled in {filled_in:.1f}s)"
        )
        print(f"  ratio {args.jobs} jobs / 0 jobs:      {full / empty:8.2f}x")
    finally:
        redis_svc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
