#!/usr/bin/env bash
# Several gateways on one PostgreSQL, in one run on this machine:
#
#   1. durable jobs/s through 1, 2 and 3 gateways on one store (the scaling curve): JOBS echo
#      jobs through POST /api/batch (1,000 per batch, 8 batches at once, the clients taking
#      turns over the gateways), the same two workers behind every gateway;
#   2. pickup of a job accepted on one gateway and claimed by another: the accepting gateway has
#      no worker, so every job is claimed by the other on its signal (16 clients, one
#      POST /api/jobs?wait= each); beside it, the same gateway accepting and running its own;
#   3. what a rate-limit decision costs: POST /api/process echo at a steady RATE, with the
#      limits local and with them in Redis (one script per decision), twice each, alternated.
#
#   bench/cluster.sh                      # needs PostgreSQL's server binaries and redis-server
#   JOBS=50000 RATE=2000 bench/cluster.sh
#
# On two cores every added gateway takes CPU from PostgreSQL and the workers: the curve says
# what a second gateway costs here, not what it gains on a machine per gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-100000} RATE=${RATE:-3000}
work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_postgres() { if [ "$(id -u)" -eq 0 ]; then setpriv --reuid postgres --regid postgres --init-groups -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $work/pg/postmaster.pid ]] && as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
[[ -n $pg_bin ]] || { echo "needs PostgreSQL's server binaries: apt-get install postgresql"; exit 1; }
command -v jq >/dev/null || { echo "needs jq: apt-get install jq"; exit 1; }
command -v redis-server >/dev/null || { echo "needs redis-server: apt-get install redis-server"; exit 1; }

cargo build --release --quiet -p rampart-gateway -p rampart-worker -p rampart-loadgen
cargo build --release --quiet -p rampart-gateway --example jobs_bench
bench=target/release/examples/jobs_bench

mkdir "$work/pg" && [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$work/pg"
as_postgres "$pg_bin/initdb" -D "$work/pg" -U rampart -A trust >/dev/null
as_postgres "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
  -o "-p 19460 -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=512MB" start >/dev/null
database() {
  as_postgres "$pg_bin/psql" -q -h 127.0.0.1 -p 19460 -U rampart -d postgres -c "CREATE DATABASE $1" >/dev/null
  echo "postgres://rampart@127.0.0.1:19460/$1"
}
redis-server --port 19470 --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & pids+=($!)

workers=()
for i in 1 2; do
  target/release/rampart-worker --listen "127.0.0.1:$((19450 + i))" --admin-listen "127.0.0.1:$((19455 + i))" \
    >/dev/null 2>&1 & pids+=($!)
  workers+=("http://127.0.0.1:$((19450 + i))")
done
worker_list=$(IFS=,; echo "${workers[*]}")

# Starts gateway number $1 on store $2 with workers $3 and config file $4; sets $url to its URL.
# (Not called in $(...): the subshell would keep its pid from stop_gateways.)
gateway_pids=()
start_gateway() {
  local port=$((19400 + 2 * $1))
  RAMPART_JOBS__NODE_ID="gateway-$1" target/release/rampart-gateway --listen "127.0.0.1:$port" \
    --admin-listen "127.0.0.1:$((port + 1))" --workers "$3" --store "$2" ${4:+--config "$4"} \
    >"$work/gateway-$1.log" 2>&1 &
  pids+=($!); gateway_pids+=($!)
  for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$((port + 1))/health" 2>/dev/null && break; sleep 0.1; done
  url="http://127.0.0.1:$port"
}
stop_gateways() {
  kill "${gateway_pids[@]}" 2>/dev/null || true
  wait "${gateway_pids[@]}" 2>/dev/null || true
  gateway_pids=()
}
# Waits until the gateway behind admin port $1 counts $2 live members and hears their signals.
wait_joined() {
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$1/admin/cluster" 2>/dev/null | grep -q "\"live\":$2,.*\"signals\":true" && return
    sleep 0.1
  done
  echo "gateways did not join"; exit 1
}

echo "== durable jobs/s through 1, 2 and 3 gateways on one PostgreSQL ($JOBS echo jobs, 2 workers)"
for count in 1 2 3; do
  store=$(database "scale_$count")
  urls=()
  for n in $(seq "$count"); do start_gateway "$n" "$store" "$worker_list" ""; urls+=("$url"); done
  wait_joined 19403 "$count"
  printf '%d gateway(s): ' "$count"
  $bench --url "$(IFS=,; echo "${urls[*]}")" --jobs "$JOBS" --batch 1000 --concurrency 8 | grep "jobs/s"
  stop_gateways
done

echo "== pickup: accepted on one gateway, claimed by another (5,000 jobs, 16 clients)"
store=$(database picked_elsewhere)
start_gateway 1 "$store" "http://127.0.0.1:1" ""; front=$url
start_gateway 2 "$store" "$worker_list" ""; back=$url
wait_joined 19403 2
echo "accepted on gateway-1 (no worker), run by gateway-2:"
$bench --url "$front" --jobs 5000 --single --concurrency 16 | grep -E "pickup|round trip"
echo "accepted and run by gateway-2 itself:"
$bench --url "$back" --jobs 5000 --single --concurrency 16 | grep -E "pickup|round trip"
stop_gateways

echo "== a rate-limit decision: local vs in Redis (POST /api/process echo at $RATE/s, 10 s each)"
printf '[rate_limit]\nrate = 1000000\nburst = 1000000\n' >"$work/local.toml"
printf '[rate_limit]\nrate = 1000000\nburst = 1000000\nredis = "redis://127.0.0.1:19470"\n' >"$work/redis.toml"
for round in 1 2; do
  for mode in local redis; do
    start_gateway 1 "sqlite://$work/rl-$mode-$round.db" "$worker_list" "$work/$mode.toml"
    target/release/rampart-load -m POST -H "content-type: application/json" -b '{"kind":"echo","payload":{}}' \
      --rate "$RATE" -c 64 -d 10s --no-progress --json "$url/api/process" >"$work/load.json"
    jq -r --arg mode "$mode" --arg round "$round" '"\($mode) round \($round): \(.succeeded) ok, \(.failed) failed; p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, p99.9 \(.latency_ms.p99_9) ms"' "$work/load.json"
    stop_gateways
  done
done
