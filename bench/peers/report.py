"""The one line every Python peer of bench/jobs-peers.sh prints: jobs/s and pickup p50/p99."""


def report(jobs: int, elapsed: float, enqueued: float, pickups: list[float]) -> None:
    pickups = sorted(pickups)
    p = lambda q: pickups[round((len(pickups) - 1) * q)] * 1000 if pickups else float("nan")
    print(f"jobs {jobs} in {elapsed:.2f}s: {jobs / elapsed:.0f} jobs/s enqueued and completed "
          f"(enqueue alone {jobs / enqueued:.0f}/s); pickup p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms "
          f"over {len(pickups)} jobs")
