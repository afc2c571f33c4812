"""Celery (PyPI) with Redis (not durable), for bench/jobs-peers.sh. As a module it is the Celery
app (`celery -A celery_peer worker`); run as a script it enqueues N no-op tasks (or one at a time
at RATE per second) and waits until the workers have run them all; prints jobs/s and pickup
(enqueued to started) p50/p99.

    REDIS_URL=redis://127.0.0.1:PORT/0 python3 bench/peers/celery_peer.py N [RATE]
"""

from report import report
import os
import sys
import time

import redis
from celery import Celery

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("celery_peer", broker=URL)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=64, broker_pool_limit=4)


@app.task(name="noop")
def noop(created: float) -> None:
    store = redis.Redis.from_url(URL)
    store.rpush("pickups", time.time() - created)


def main() -> None:
    jobs = int(sys.argv[1])
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    store = redis.Redis.from_url(URL)
    store.delete("pickups")
    started = time.perf_counter()
    for at in range(jobs):
        noop.apply_async(args=(time.time(),))
        if rate > 0:
            time.sleep(max(0.0, started + (at + 1) / rate - time.perf_counter()))
    enqueued = time.perf_counter() - started
    while store.llen("pickups") < jobs:
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    pickups = [float(p) for p in store.lrange("pickups", 0, -1)]
    report(jobs, elapsed, enqueued, pickups)


if __name__ == "__main__":
    main()
