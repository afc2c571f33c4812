#!/usr/bin/env bash
# Rampart's durable jobs beside the queues users pick instead, in one run on this machine:
# PgQueuer and procrastinate (PyPI) on a private PostgreSQL with its durable defaults (fsync on,
# synchronous_commit on) — the same server Rampart's PostgreSQL store uses — Celery (PyPI) and
# Sidekiq (Debian's ruby-sidekiq) on Redis (Debian's redis-server, no persistence: not durable),
# and Rampart on SQLite (synchronous=FULL) and on PostgreSQL, with 2 of its workers.
#
#   bench/jobs-peers.sh        # apt-get install postgresql redis-server ruby-sidekiq
#                              # pip install pgqueuer procrastinate celery redis asyncpg psycopg
#   JOBS=100000 SLOW_JOBS=10000 RATE=200 bench/jobs-peers.sh
#
# Throughput: JOBS no-op jobs (SLOW_JOBS for procrastinate and Celery, which run a few hundred a
# second), enqueued in batches of 1,000 (Rampart: POST /api/batch, 8 at once) while the workers
# drain them; jobs/s from the first enqueue to the last completion. Pickup: PICKUP_JOBS jobs
# enqueued one at a time at RATE per second (a steady load), enqueue to start p50/p99; Rampart's
# line gives its round trip (accept, run on a worker, record, answer), which bounds its pickup.
# Each peer at its best settings found for 2 cores (printed with its line).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-50000} SLOW_JOBS=${SLOW_JOBS:-5000} RATE=${RATE:-200} PICKUP_JOBS=${PICKUP_JOBS:-1000}
work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_postgres() { if [ "$(id -u)" -eq 0 ]; then setpriv --reuid postgres --regid postgres --init-groups -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "sidekiq_peer.rb" 2>/dev/null || true
  redis-cli -p 19381 shutdown nosave >/dev/null 2>&1 || true
  [[ -f $work/pg/postmaster.pid ]] && as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT
for tool in redis-server sidekiq; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install redis-server ruby-sidekiq postgresql"; exit 1; }
done
[[ -n $pg_bin ]] || { echo "needs PostgreSQL's server binaries: apt-get install postgresql"; exit 1; }
python3 -c "import pgqueuer, procrastinate, celery, redis, asyncpg, psycopg" 2>/dev/null ||
  { echo "needs: pip install pgqueuer procrastinate celery redis asyncpg psycopg"; exit 1; }

cargo build --release --quiet -p rampart-gateway -p rampart-worker
cargo build --release --quiet -p rampart-gateway --example jobs_bench

mkdir "$work/pg" && [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$work/pg"
as_postgres "$pg_bin/initdb" -D "$work/pg" -U rampart -A trust >/dev/null
as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
  -o "-p 19361 -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=512MB" start >/dev/null
database() {
  as_postgres "$pg_bin/psql" -q -h 127.0.0.1 -p 19361 -U rampart -d postgres -c "CREATE DATABASE $1" >/dev/null
  echo "postgres://rampart@127.0.0.1:19361/$1"
}
redis-server --port 19381 --save '' --appendonly no --daemonize yes >/dev/null
export REDIS_URL=redis://127.0.0.1:19381/0

row() { printf '%-58s %s\n' "$1" "$(grep -o 'jobs [0-9]* in .*' <<<"$2" | head -1)"; }

echo "== throughput (jobs/s, enqueue and drain overlapping), then pickup at $RATE jobs/s"
pgq=$(database pgq)
row "PgQueuer 2 processes, batch_size 1000" "$(python3 bench/peers/pgqueuer_peer.py "$pgq" "$JOBS" 2 1000)"
row "PgQueuer 2 processes, batch_size 10 (its default)" "$(python3 bench/peers/pgqueuer_peer.py "$pgq" "$JOBS" 2 10)"
row "PgQueuer pickup" "$(python3 bench/peers/pgqueuer_peer.py "$pgq" "$PICKUP_JOBS" 2 1000 "$RATE")"
pro=$(database procrastinate)
row "procrastinate 2 processes, concurrency 10" "$(python3 bench/peers/procrastinate_peer.py "$pro" "$SLOW_JOBS" 2 10 2>/dev/null)"
row "procrastinate pickup" "$(python3 bench/peers/procrastinate_peer.py "$pro" "$PICKUP_JOBS" 2 10 "$RATE" 2>/dev/null)"

(cd bench/peers && exec celery -A celery_peer worker -c 2 -P prefork --without-gossip --without-mingle --without-heartbeat \
  >"$work/celery.log" 2>&1) & pids+=($!)
sleep 4
row "Celery prefork 2 processes, prefetch 64 (Redis)" "$(cd bench/peers && python3 celery_peer.py "$SLOW_JOBS")"
row "Celery pickup" "$(cd bench/peers && python3 celery_peer.py "$PICKUP_JOBS" "$RATE")"
kill "${pids[-1]}"

(cd bench/peers && exec sidekiq -r ./sidekiq_peer.rb -c 10 >"$work/sidekiq.log" 2>&1) & pids+=($!)
sleep 3
row "Sidekiq concurrency 10 (Redis)" "$(cd bench/peers && ruby sidekiq_peer.rb "$JOBS" 2>/dev/null)"
row "Sidekiq pickup" "$(cd bench/peers && ruby sidekiq_peer.rb "$PICKUP_JOBS" "$RATE" 2>/dev/null)"
kill "${pids[-1]}"

bench=target/release/examples/jobs_bench
rampart() {
  local label=$1 store=$2 worker_pids=()
  for port in 19391 19392; do
    target/release/rampart-worker --listen "127.0.0.1:$port" >/dev/null 2>&1 & worker_pids+=($!); pids+=($!)
  done
  target/release/rampart-gateway --listen 127.0.0.1:19390 --admin-listen 127.0.0.1:19399 \
    --workers http://127.0.0.1:19391,http://127.0.0.1:19392 --store "$store" >"$work/gateway-$label.log" 2>&1 & pids+=($!)
  local gateway=$!
  for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:19390/ready 2>/dev/null && break; sleep 0.1; done
  row "Rampart $label, 2 workers, /api/batch" "$($bench --url http://127.0.0.1:19390 --jobs "$JOBS" --batch 1000 --concurrency 8)"
  local steady
  steady=$($bench --url http://127.0.0.1:19390 --jobs "$PICKUP_JOBS" --single --concurrency 16 --rate "$RATE")
  printf '%-58s %s; %s\n' "Rampart $label pickup" "$(grep -o 'pickup.*' <<<"$steady")" "$(grep -o 'round trip.*' <<<"$steady")"
  kill "$gateway" "${worker_pids[@]}"; wait "$gateway" "${worker_pids[@]}" 2>/dev/null || true
}
rampart "SQLite (FULL)" "sqlite://$work/rampart.db"
rampart "PostgreSQL" "$(database rampart)"
