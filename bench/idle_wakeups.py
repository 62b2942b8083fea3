"""How many idle workers one push wakes (issue 18, item 9): the cost of ``BLMOVE q q``.

An idle FinexWorker waits with ``BLMOVE q q LEFT LEFT`` (head to head: it wakes when the queue
has a job and takes nothing), then claims. Because the job stays in the list, Redis goes on to
serve every other client blocked on that list: each push wakes all idle workers of the queue,
one claims the job, and the others claim nothing and block again. This measures it with N
clients blocked the way the worker blocks, one push at a time, on a private redis-server.

    .venv/bin/python bench/idle_wakeups.py [--workers 1 5 10 20] [--pushes 50]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import redis

from finex_workers.dev import localservices

KEY = "rq:queue:idle-bench"


def measure(url: str, workers: int, pushes: int) -> tuple[float, float]:
    """Wake-ups per push, and Redis commands per push (wake-ups + their empty claims + the push)."""
    wakeups = 0
    lock = threading.Lock()
    stop = threading.Event()

    def idle() -> None:
        nonlocal wakeups
        conn = redis.Redis.from_url(url)
        while not stop.is_set():
            if conn.blmove(KEY, KEY, 0.2, "LEFT", "LEFT") is not None:
                with lock:
                    wakeups += 1
                conn.lpop(KEY)  # the claim: only the first finds the job; the rest find none
                time.sleep(0.01)  # as the real worker: claimed nothing, loops, blocks again

    threads = [threading.Thread(target=idle, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    conn = redis.Redis.from_url(url)
    conn.delete(KEY)
    time.sleep(0.5)
    before = int(conn.info("stats")["total_commands_processed"])
    for _ in range(pushes):
        conn.rpush(KEY, "job")
        time.sleep(0.05)
    after = int(conn.info("stats")["total_commands_processed"])
    stop.set()
    for t in threads:
        t.join()
    idle_polls = workers * (pushes * 0.05 / 0.2)  # the 0.2 s timeouts that return empty
    return wakeups / pushes, (after - before - idle_polls) / pushes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--pushes", type=int, default=50)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="finex-bench-"))
    path.chmod(0o755)
    server = localservices.start_redis(path / "redis")
    try:
        print("| idle workers | wake-ups per push | Redis commands per push |")
        print("|---:|---:|---:|")
        for n in args.workers:
            woken, commands = measure(server.url, n, args.pushes)
            print(f"| {n} | {woken:.1f} | {commands:.1f} |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
