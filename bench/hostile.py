#!/usr/bin/env python3
"""Figures of the front door under hostile clients, on real processes (release builds).

    cargo build --release -p rampart-gateway -p rampart-worker -p rampart-loadgen
    bench/hostile.py                      # every figure, against target/release
    bench/hostile.py --gateway /tmp/old/rampart-gateway silent sse   # some figures, another build

Figures (each starts its own workers and gateway on free loopback ports):
  silent   a normal client's latency (rampart-load, 8 connections) alone, then while 20,000
           silent connections are opened and held against the gateway (two attacker processes:
           this machine allows 20,000 descriptors per process), and 200 new clients connecting
           once they are all held
  idle     gateway RSS per idle keep-alive connection (5,000 of them, each after one request)
  sse      gateway RSS per idle SSE stream (3,000 on one running job), and after they close
  apikey   requests admitted with a fresh X-Api-Key each, at rate 10 / burst 5 (500 sent)
  pickup   a short job's pickup delay (started_at - created_at) behind a batch of 520 one-hour
           sleeps on 2 workers (100 echo jobs, one at a time)
"""

import argparse
import asyncio
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """Workers and a gateway on free ports, stopped on exit."""

    def __init__(self, args, workers=1, config="", worker_args=()):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="rampart-hostile-")
        urls = []
        for _ in range(workers):
            port = free_port()
            self.procs.append(subprocess.Popen(
                [args.worker, "--listen", f"127.0.0.1:{port}", *worker_args],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit))
            urls.append(f"http://127.0.0.1:{port}")
        self.port, self.admin = free_port(), free_port()
        path = os.path.join(self.dir, "gateway.toml")
        with open(path, "w") as f:
            f.write(f'listen = "127.0.0.1:{self.port}"\nadmin_listen = "127.0.0.1:{self.admin}"\n')
            f.write(f'workers = {json.dumps(urls)}\nstore = "sqlite://{self.dir}/rampart.db"\n{config}')
        self.gateway = subprocess.Popen([args.gateway, "--config", path], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, preexec_fn=raise_fd_limit)
        self.procs.append(self.gateway)
        self.gateway.stdout.readline()  # "listening on" once it serves
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                if urllib.request.urlopen(self.base + "/ready", timeout=1).status == 200:
                    break
            except Exception:
                time.sleep(0.1)

    def rss(self):
        with open(f"/proc/{self.gateway.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
            proc.wait()


def request(method, url, body=None, headers=None, timeout=15):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def load(args, url, seconds):
    out = subprocess.run([args.load, "-c", "8", "-d", f"{seconds}s", "--json", "--no-progress", url],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def hold_silent(port, count, ready, release):
    raise_fd_limit()
    socks = []
    for _ in range(count):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            pass
    ready.put(len(socks))
    release.wait()


def summary(report):
    latency = report["latency_ms"]
    return (f"{report['qps']:.0f} req/s, p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms, "
            f"max {latency['max']:.1f} ms, {report['failed']} failed {report['errors'] or ''}")


def fresh_clients(port, count=200):
    """`count` clients that each connect afresh for one request; their latencies and how many
    were served."""
    latencies, served = [], 0
    for n in range(count):
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(f"GET /api/process?data={n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                served += s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            pass
        latencies.append((time.perf_counter() - started) * 1000)
    return sorted(latencies), served


def fig_silent(args):
    with Stack(args) as stack:
        url = stack.base + "/api/process?data=x"
        alone = load(args, url, 10)
        ready, release = multiprocessing.Queue(), multiprocessing.Event()
        attackers = [multiprocessing.Process(target=hold_silent, args=(stack.port, 10_000, ready, release))
                     for _ in range(2)]
        for attacker in attackers:
            attacker.start()
        # The normal client keeps its 8 connections for the whole attack, so the connections left
        # to newcomers are only those the gateway frees.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            during = pool.submit(load, args, url, 20)
            opened = sum(ready.get() for _ in attackers)
            fresh, served = fresh_clients(stack.port)
            report = during.result()
        release.set()
        for attacker in attackers:
            attacker.join()
        fresh.sort()
        print(f"silent: alone: {summary(alone)}")
        print(f"silent: while {opened} silent connections were opened and held: {summary(report)}")
        print(f"silent: with them all held, {served} of 200 new connections served, p50 "
              f"{fresh[100]:.2f} ms, p99 {fresh[197]:.2f} ms")
        if args.raw:
            print(json.dumps(report))


def fig_idle(args, count=5000):
    with Stack(args) as stack:
        before = stack.rss()
        socks = []
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", stack.port))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        for s in socks:
            s.recv(4096)
        time.sleep(1)
        after = stack.rss()
        print(f"idle: {count} idle keep-alive connections: +{(after - before) / count:.0f} bytes of RSS each")
        for s in socks:
            s.close()


def running_job(stack):
    """A two-minute job, running: the one the event streams follow."""
    status, body = request("POST", stack.base + "/api/jobs", {"kind": "sleep", "payload": {"ms": 120_000}})
    STACK_PID[0] = stack.gateway.pid
    time.sleep(0.5)
    return json.loads(body)["id"]


def fig_sse(args, count=3000):
    with Stack(args) as stack:
        job = running_job(stack)
        before = stack.rss()

        async def streams():
            conns = []
            for _ in range(count):
                reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
                writer.write(f"GET /api/jobs/{job}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                conns.append((reader, writer))
            for reader, _ in conns:
                await reader.readuntil(b"\n\n")
            await asyncio.sleep(3)
            during = stack.rss()
            for _, writer in conns:
                writer.close()
            return during

        during = asyncio.run(streams())
        time.sleep(3)
        after = stack.rss()
        print(f"sse: {count} idle SSE streams over HTTP/1.1 (a connection each): "
              f"+{(during - before) / count:.0f} bytes of RSS each; {(after - before) / 1e6:+.1f} MB once they closed")
    with Stack(args) as stack:
        job = running_job(stack)
        before = stack.rss()
        during = asyncio.run(h2_streams(stack.port, job, count))
        time.sleep(3)
        after = stack.rss()
        print(f"sse: {count} idle SSE streams over h2c (100 per connection): "
              f"+{(during[1] - before) / count:.0f} bytes of RSS each ({during[0]} opened); "
              f"{(after - before) / 1e6:+.1f} MB once they closed")
        if during[0] == 0:
            print("sse: (no h2c stream opened)")


async def h2_streams(port, job, count, per_connection=100, stack=None):
    """Opens `count` SSE streams over h2c connections of `per_connection` streams each; returns
    how many got their first event and the gateway's RSS while they are all open."""
    import h2.config
    import h2.connection
    import h2.events

    conns, opened = [], 0
    pid = None
    for _ in range((count + per_connection - 1) // per_connection):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        started = set()
        for _ in range(per_connection):
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, [(":method", "GET"), (":path", f"/api/jobs/{job}/events"),
                                       (":scheme", "http"), (":authority", "x")], end_stream=True)
            started.add(stream)
        writer.write(conn.data_to_send())
        got = set()
        while len(got) < len(started):
            data = await asyncio.wait_for(reader.read(65536), 10)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    got.add(event.stream_id)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            writer.write(conn.data_to_send())
        opened += len(got)
        conns.append((reader, writer, conn))
    await asyncio.sleep(3)
    with open(f"/proc/{STACK_PID[0]}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
    for _, writer, _ in conns:
        writer.close()
    return opened, rss


STACK_PID = [0]


def fig_apikey(args, sent=500):
    with Stack(args, config="[rate_limit]\nrate = 10\nburst = 5\n") as stack:
        started = time.time()
        admitted = sum(request("GET", stack.base + f"/api/process?data={n}", headers={"x-api-key": f"k{n}"})[0] == 200
                       for n in range(sent))
        print(f"apikey: {admitted} of {sent} requests admitted with a fresh X-Api-Key each "
              f"(rate 10/s, burst 5, {time.time() - started:.1f} s)")


def micros(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e6


def fig_pickup(args, echoes=100):
    with Stack(args, workers=2) as stack:
        batch = {"jobs": [{"kind": "sleep", "payload": {"ms": 3_600_000}, "timeout_ms": 3_700_000}] * 520}
        status, _ = request("POST", stack.base + "/api/batch?wait=1ms", batch, timeout=30)
        time.sleep(1)
        pickups, unfinished = [], 0
        for n in range(echoes):
            status, body = request("POST", stack.base + "/api/jobs?wait=3s", {"kind": "echo", "payload": n})
            job = json.loads(body)
            if job.get("started_at"):
                pickups.append((micros(job["started_at"]) - micros(job["created_at"])) / 1000)
            if job.get("status") != "succeeded":
                unfinished += 1
        pickups.sort()
        if pickups:
            p99 = pickups[min(len(pickups) - 1, int(len(pickups) * 0.99))]
            print(f"pickup: behind 520 one-hour sleeps, {echoes} echo jobs: pickup p50 "
                  f"{statistics.median(pickups):.1f} ms, p99 {p99:.1f} ms, max {pickups[-1]:.1f} ms; "
                  f"{unfinished} not done within 3 s")
        else:
            print(f"pickup: behind 520 one-hour sleeps, no echo job started; {unfinished} of {echoes} not done within 3 s")


FIGURES = {"silent": fig_silent, "idle": fig_idle, "sse": fig_sse, "apikey": fig_apikey, "pickup": fig_pickup}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    release = os.path.join(ROOT, "target", "release")
    parser.add_argument("--gateway", default=os.path.join(release, "rampart-gateway"))
    parser.add_argument("--worker", default=os.path.join(release, "rampart-worker"))
    parser.add_argument("--load", default=os.path.join(release, "rampart-load"))
    parser.add_argument("--raw", action="store_true", help="also print the load generator's JSON reports")
    parser.add_argument("figures", nargs="*", metavar="FIGURE", help=f"any of {', '.join(FIGURES)} (default: all)")
    args = parser.parse_args()
    unknown = [name for name in args.figures if name not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    raise_fd_limit()
    for name in args.figures or FIGURES:
        FIGURES[name](args)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
