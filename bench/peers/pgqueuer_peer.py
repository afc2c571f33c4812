"""PgQueuer (PyPI) on PostgreSQL, for bench/jobs-peers.sh: N no-op jobs enqueued in batches of
1,000 while PROCESSES consumers drain them; prints jobs/s (first enqueue to last completion) and
pickup (job created to its handler starting) p50/p99. With RATE, the jobs are enqueued one at a
time at RATE per second instead (a steady load), for the pickup.

    python3 bench/peers/pgqueuer_peer.py DSN N [PROCESSES] [BATCH_SIZE] [RATE]
"""

from report import report
import asyncio
import multiprocessing
import os
import signal
import sys
import time
from datetime import datetime, timezone

import asyncpg
from pgqueuer import AsyncpgDriver, PgQueuer, Queries


def consume(dsn: str, batch_size: int, out: str, ready) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        pgq = PgQueuer(AsyncpgDriver(conn))
        pickups: list[float] = []

        @pgq.entrypoint("noop")
        async def noop(job) -> None:
            pickups.append((datetime.now(timezone.utc) - job.created).total_seconds())

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
        ready.set()
        await pgq.run(batch_size=batch_size, dequeue_timeout=__import__("datetime").timedelta(seconds=1))
        with open(out, "w") as file:
            file.write("\n".join(str(p) for p in pickups))

    asyncio.run(main())


async def run(dsn: str, jobs: int, processes: int, batch_size: int, rate: float) -> None:
    conn = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(conn))
    try:
        await queries.install()
    except Exception:  # already installed by an earlier run
        pass
    await conn.execute("DELETE FROM pgqueuer")
    outs = [f"/tmp/pgq-pickups-{os.getpid()}-{i}" for i in range(processes)]
    readies = [multiprocessing.Event() for _ in outs]
    workers = [multiprocessing.Process(target=consume, args=(dsn, batch_size, out, ready)) for out, ready in zip(outs, readies)]
    for worker in workers:
        worker.start()
    for ready in readies:
        ready.wait()
    await asyncio.sleep(1)
    started = time.perf_counter()
    chunk = 1000
    if rate > 0:
        for at in range(jobs):
            await queries.enqueue("noop", None, 0)
            await asyncio.sleep(max(0.0, started + (at + 1) / rate - time.perf_counter()))
    else:
        for at in range(0, jobs, chunk):
            n = min(chunk, jobs - at)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
    enqueued = time.perf_counter() - started
    while await conn.fetchval("SELECT count(*) FROM pgqueuer") > 0:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    for worker in workers:
        os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join()
    pickups = [float(line) for out in outs for line in open(out).read().split() if line]
    for out in outs:
        os.remove(out)
    report(jobs, elapsed, enqueued, pickups)


if __name__ == "__main__":
    dsn, jobs = sys.argv[1], int(sys.argv[2])
    processes = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    asyncio.run(run(dsn, jobs, processes, batch, rate))
