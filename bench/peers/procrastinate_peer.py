"""procrastinate (PyPI) on PostgreSQL, for bench/jobs-peers.sh: N no-op jobs deferred in batches
of 1,000 while PROCESSES workers (CONCURRENCY each) run them; prints jobs/s (first defer to last
completion) and pickup (deferred to started) p50/p99. With RATE, jobs are deferred one at a time
at RATE per second (a steady load), for the pickup.

    python3 bench/peers/procrastinate_peer.py DSN N [PROCESSES] [CONCURRENCY] [RATE]
"""

from report import report
import asyncio
import multiprocessing
import os
import sys
import time

import psycopg
from procrastinate import App, PsycopgConnector


def make_app(dsn: str, pickups: list[float]) -> App:
    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop(created: float) -> None:
        pickups.append(time.time() - created)

    return app


def work(dsn: str, concurrency: int, out: str) -> None:
    pickups: list[float] = []
    app = make_app(dsn, pickups)

    async def main() -> None:
        async with app.open_async():
            # Ends at SIGTERM (procrastinate's own handler), after the running jobs.
            await app.run_worker_async(concurrency=concurrency)

    asyncio.run(main())
    with open(out, "w") as file:
        file.write("\n".join(str(p) for p in pickups))


def left(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')").fetchone()[0]


async def run(dsn: str, jobs: int, processes: int, concurrency: int, rate: float) -> None:
    app = make_app(dsn, [])
    async with app.open_async():
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0]
        if exists is None:
            await app.schema_manager.apply_schema_async()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM procrastinate_events; DELETE FROM procrastinate_jobs")
        outs = [f"/tmp/procrastinate-pickups-{os.getpid()}-{i}" for i in range(processes)]
        workers = [multiprocessing.Process(target=work, args=(dsn, concurrency, out)) for out in outs]
        for worker in workers:
            worker.start()
        await asyncio.sleep(2)
        noop = app.tasks["noop"]
        started = time.perf_counter()
        if rate > 0:
            for at in range(jobs):
                await noop.defer_async(created=time.time())
                await asyncio.sleep(max(0.0, started + (at + 1) / rate - time.perf_counter()))
        else:
            for at in range(0, jobs, 1000):
                await noop.batch_defer_async(*({"created": time.time()} for _ in range(min(1000, jobs - at))))
        enqueued = time.perf_counter() - started
        while left(dsn) > 0:
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join()
    pickups = [float(line) for out in outs for line in open(out).read().split() if line]
    for out in outs:
        os.remove(out)
    report(jobs, elapsed, enqueued, pickups)


if __name__ == "__main__":
    dsn, jobs = sys.argv[1], int(sys.argv[2])
    processes = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    asyncio.run(run(dsn, jobs, processes, concurrency, rate))
