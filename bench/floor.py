"""The floor for a reliable queue on Redis: a minimal Lua claim + ack loop, nothing else.

    python bench/floor.py REDIS_URL QUEUE_KEY OUT_FILE

Claim moves one id from the queue list to a processing list and returns it (one round trip);
ack removes it from the processing list and counts it (one round trip). A job that dies between
the two stays in the processing list, which is what makes it reliable. No job data, no
registries, no logging: whatever a real worker does beyond this is its overhead. Writes
``<jobs> <first claim> <last ack>`` (perf_counter seconds) to OUT_FILE.
"""

from __future__ import annotations

import sys
import time

import redis

CLAIM = "return redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')"
ACK = "redis.call('LREM', KEYS[1], 1, ARGV[1]); return redis.call('INCR', KEYS[2])"


def noop() -> None:
    return None


def main() -> None:
    url, queue, out = sys.argv[1:4]
    conn = redis.Redis.from_url(url)
    claim, ack = conn.register_script(CLAIM), conn.register_script(ACK)
    processing, done = f"{queue}:processing", f"{queue}:done"
    jobs, first, last = 0, 0.0, 0.0
    while True:
        job_id = claim(keys=[queue, processing])
        if job_id is None:
            break
        if not jobs:
            first = time.perf_counter()
        noop()
        ack(keys=[processing, done], args=[job_id])
        jobs += 1
        last = time.perf_counter()
    with open(out, "w") as f:
        f.write(f"{jobs} {first} {last}\n")


if __name__ == "__main__":
    main()
