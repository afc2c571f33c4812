#!/usr/bin/env bash
# Durable jobs: accepted-and-completed `echo` jobs per second and enqueue-to-start latency, on
# SQLite (synchronous=FULL, the default, and the NORMAL opt-in) and on PostgreSQL (a private
# server with its default, durable settings: fsync on, synchronous_commit on), against the same
# two workers in one run.
#
#   bench/jobs.sh                       # needs PostgreSQL's server binaries (apt-get install postgresql)
#   JOBS=200000 WORKERS=2 bench/jobs.sh
#   PROFILE=docs/perf bench/jobs.sh     # also saves CPU flame graphs of the gateway and the first
#                                       # worker, taken during each store's throughput run
#   BASELINE=/path/to/old/bin bench/jobs.sh   # also an older build's gateway and workers, each
#                                             # store measured with both, one after the other
#
# Throughput: JOBS jobs through POST /api/batch (1,000 per batch, 8 batches at once); each batch
# answer streams a line per job as it completes. Pickup: 5,000 single POST /api/jobs?wait=60s
# from 16 clients (a steady load, not a backlog), then started_at - created_at of each job (0 for
# a job started at acceptance) and the whole round trip, which bounds the pickup from above.
# Single jobs: 30,000 POST /api/jobs?wait=60s over 64 keep-alive connections, one job each.
# CPU: the gateway's and the workers' CPU time over the throughput run, per job.
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
bench=target/release/examples/jobs_bench

# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

# One build's workers, gateway and measurements against one store.
run_store() {
  local name=$1 store=$2 bin=$3 label=$4
  local worker_pids=() workers=()
  for i in $(seq "$WORKERS"); do
    local port=$((19350 + i))
    "$bin/rampart-worker" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 100))" >/dev/null 2>&1 &
    worker_pids+=($!); pids+=($!)
    workers+=("http://127.0.0.1:$port")
  done
  local worker_list; worker_list=$(IFS=,; echo "${workers[*]}")
  "$bin/rampart-gateway" --listen 127.0.0.1:19340 --admin-listen 127.0.0.1:19341 \
    --workers "$worker_list" --store "$store" >"$work/gateway-$name-$label.log" 2>&1 & pids+=($!)
  local gateway=$!
  for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:19340/ready 2>/dev/null && break; sleep 0.1; done
  echo "== $name ($label)"
  local profiles=()
  if [[ -n ${PROFILE:-} ]]; then
    mkdir -p "$PROFILE"
    (sleep 1; curl -fsS -o "$PROFILE/jobs-$name-gateway.svg" "http://127.0.0.1:19341/debug/pprof/profile?seconds=3&format=svg") & profiles+=($!)
    (sleep 1; curl -fsS -o "$PROFILE/jobs-$name-worker.svg" "http://127.0.0.1:19451/debug/pprof/profile?seconds=3&format=svg") & profiles+=($!)
  fi
  local gateway_cpu workers_cpu=0 w
  gateway_cpu=$(cpu_of "$gateway")
  for w in "${worker_pids[@]}"; do workers_cpu=$(echo "$workers_cpu + $(cpu_of "$w")" | bc -l); done
  $bench --url http://127.0.0.1:19340 --jobs "$JOBS" --batch 1000 --concurrency 8 | grep "jobs/s"
  gateway_cpu=$(echo "$(cpu_of "$gateway") - $gateway_cpu" | bc -l)
  local workers_after=0
  for w in "${worker_pids[@]}"; do workers_after=$(echo "$workers_after + $(cpu_of "$w")" | bc -l); done
  workers_cpu=$(echo "$workers_after - $workers_cpu" | bc -l)
  printf 'CPU per job: gateway %.1f us, workers %.1f us\n' \
    "$(echo "$gateway_cpu * 1000000 / $JOBS" | bc -l)" "$(echo "$workers_cpu * 1000000 / $JOBS" | bc -l)"
  for p in "${profiles[@]}"; do wait "$p" || echo "a profile was not saved"; done
  $bench --url http://127.0.0.1:19340 --jobs 5000 --single --concurrency 16 | grep -E "pickup|round trip"
  $bench --url http://127.0.0.1:19340 --jobs 30000 --single --concurrency 64 | grep -E "jobs/s" | sed 's/^/single: /'
  kill "$gateway" "${worker_pids[@]}"; wait "$gateway" "${worker_pids[@]}" 2>/dev/null || true
}

# Each store with this build and, given BASELINE, the older one, on fresh databases.
run_both() {
  local name=$1 make_store=$2
  run_store "$name" "$($make_store new)" target/release new
  if [[ -n ${BASELINE:-} ]]; then run_store "$name" "$($make_store old)" "$BASELINE" baseline; fi
}

sqlite_full() { echo "sqlite://$work/rampart-$1.db"; }
sqlite_normal() { echo "sqlite://$work/rampart-normal-$1.db?synchronous=normal"; }
run_both sqlite sqlite_full
# An older build takes the NORMAL parameter as part of the path; it syncs NORMAL anyway.
run_both sqlite-normal sqlite_normal

if [[ -n $pg_bin ]]; then
  mkdir "$work/pg" && [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$work/pg"
  as_postgres "$pg_bin/initdb" -D "$work/pg" -U rampart -A trust >/dev/null
  as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
    -o "-p 19360 -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=512MB" start >/dev/null
  postgres_db() {
    as_postgres "$pg_bin/psql" -q -h 127.0.0.1 -p 19360 -U rampart -d postgres -c "CREATE DATABASE jobs_$1" >/dev/null
    echo "postgres://rampart@127.0.0.1:19360/jobs_$1"
  }
  run_both postgres postgres_db
else
  echo "== postgres: skipped (no PostgreSQL server binaries; apt-get install postgresql)"
fi
