#!/usr/bin/env bash
# Durable jobs: accepted-and-completed `echo` jobs per second and enqueue-to-start latency, on
# SQLite (synchronous=FULL, the default, and the NORMAL opt-in) and on PostgreSQL (a private server with its default, durable settings: fsync on,
# synchronous_commit on), against the same two workers in one run.
#
#   bench/jobs.sh                       # needs PostgreSQL's server binaries (apt-get install postgresql)
#   JOBS=200000 WORKERS=2 bench/jobs.sh
#   PROFILE=docs/perf bench/jobs.sh     # also saves CPU flame graphs of the gateway and the first
#                                       # worker, taken during each store's throughput run
#
# Throughput: JOBS jobs through POST /api/batch (1,000 per batch, 8 batches at once); each batch
# answer streams a line per job as it completes. Pickup: 5,000 single POST /api/jobs?wait=60s
# from 16 clients (a steady load, not a backlog), then started_at - created_at of each job (0 for
# a job started at acceptance) and the whole round trip, which bounds the pickup from above.
# Single jobs: 30,000 POST /api/jobs?wait=60s over 64 keep-alive connections, one job each.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-100000} WORKERS=${WORKERS:-2}
work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_postgres() { if [ "$(id -u)" -eq 0 ]; then setpriv --reuid postgres --regid postgres --init-groups -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $work/pg/postmaster.pid ]] && as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
  [[ -n ${KEEP:-} ]] || rm -rf "$work"; echo "work: $work"
}
trap cleanup EXIT

cargo build --release --quiet -p rampart-gateway -p rampart-worker
cargo build --release --quiet -p rampart-gateway --example jobs_bench
workers=()
for i in $(seq "$WORKERS"); do
  port=$((19350 + i))
  target/release/rampart-worker --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 100))" >/dev/null 2>&1 & pids+=($!)
  workers+=("http://127.0.0.1:$port")
done
worker_list=$(IFS=,; echo "${workers[*]}")

run_store() {
  local name=$1 store=$2
  target/release/rampart-gateway --listen 127.0.0.1:19340 --admin-listen 127.0.0.1:19341 \
    --workers "$worker_list" --store "$store" >"$work/gateway-$name.log" 2>&1 & pids+=($!)
  local gateway=$!
  for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:19340/ready 2>/dev/null && break; sleep 0.1; done
  echo "== $name"
  local profiles=()
  if [[ -n ${PROFILE:-} ]]; then
    mkdir -p "$PROFILE"
    (sleep 1; curl -fsS -o "$PROFILE/jobs-$name-gateway.svg" "http://127.0.0.1:19341/debug/pprof/profile?seconds=3&format=svg") & profiles+=($!)
    (sleep 1; curl -fsS -o "$PROFILE/jobs-$name-worker.svg" "http://127.0.0.1:19451/debug/pprof/profile?seconds=3&format=svg") & profiles+=($!)
  fi
  target/release/examples/jobs_bench --url http://127.0.0.1:19340 --jobs "$JOBS" --batch 1000 --concurrency 8 | grep "jobs/s"
  for p in "${profiles[@]}"; do wait "$p" || echo "a profile was not saved"; done
  target/release/examples/jobs_bench --url http://127.0.0.1:19340 --jobs 5000 --single --concurrency 16 | grep -E "pickup|round trip"
  target/release/examples/jobs_bench --url http://127.0.0.1:19340 --jobs 30000 --single --concurrency 64 | grep -E "jobs/s"
  kill "$gateway"; wait "$gateway" 2>/dev/null || true
}

run_store sqlite "sqlite://$work/rampart.db"
run_store sqlite-normal "sqlite://$work/rampart-normal.db?synchronous=normal"

if [[ -n $pg_bin ]]; then
  mkdir "$work/pg" && [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$work/pg"
  as_postgres "$pg_bin/initdb" -D "$work/pg" -U rampart -A trust >/dev/null
  as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
    -o "-p 19360 -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=512MB" start >/dev/null
  run_store postgres "postgres://rampart@127.0.0.1:19360/postgres"
else
  echo "== postgres: skipped (no PostgreSQL server binaries; apt-get install postgresql)"
fi
