#!/usr/bin/env bash
# The compose cluster on this machine's Docker engine, offline: three gateways on one PostgreSQL
# behind HAProxy, three workers, Redis holding the rate limits. First the cluster-wide limit on
# /api/process (200/s for a client, whichever gateway it reaches) is measured through HAProxy.
# Then, under 3,000 durable jobs and a steady sync stream: one gateway is killed, another is cut
# off PostgreSQL's network for 15 s, PostgreSQL is restarted, Redis is stopped for 10 s. Every
# accepted job must succeed (a job refused while no gateway reaches the store is answered 503
# store_unavailable, nothing accepted), no attempt may run past the lease its gateway knew it
# held (so no job ran on two gateways under a live lease), the limit must admit within 10% of
# its rate, and `compose down` must leave nothing running. The last line printed is the summary.
#
#   deploy/e2e-cluster.sh   # needs Docker, root (debootstrap), Debian's mirror for the base image
set -euo pipefail
cd "$(dirname "$0")/.."
project=rampart-e2e-cluster
export RAMPART_HTTP_PORT=${RAMPART_HTTP_PORT:-18580} RAMPART_ADMIN_PORT=${RAMPART_ADMIN_PORT:-18581}
export RAMPART_ADMIN_PORT_2=${RAMPART_ADMIN_PORT_2:-18582} RAMPART_ADMIN_PORT_3=${RAMPART_ADMIN_PORT_3:-18583}
export RAMPART_CLUSTER_PORT=${RAMPART_CLUSTER_PORT:-18500}
base=http://127.0.0.1:$RAMPART_CLUSTER_PORT
admin_ports=("$RAMPART_ADMIN_PORT" "$RAMPART_ADMIN_PORT_2" "$RAMPART_ADMIN_PORT_3")
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
compose+=(-p "$project" -f docker-compose.yml -f deploy/docker-compose.offline.yml --profile cluster)
work=$(mktemp -d)
export RAMPART_ADMIN_TOKEN_FILE=${RAMPART_ADMIN_TOKEN_FILE:-$work/admin-token}
[[ -s $RAMPART_ADMIN_TOKEN_FILE ]] || head -c 32 /dev/urandom | base64 > "$RAMPART_ADMIN_TOKEN_FILE"
chmod 644 "$RAMPART_ADMIN_TOKEN_FILE"
admin_auth=(-H "Authorization: Bearer $(cat "$RAMPART_ADMIN_TOKEN_FILE")")
say() { echo "e2e-cluster: $*" >&2; }
down() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap 'down; rm -rf "$work"' EXIT
container() { docker ps -aq --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1" | head -1; }
now() { python3 -c "import time; print(round(time.time() - $started, 1))"; }

say "building the binaries and the local images"
cargo build --release --quiet -p rampart -p rampart-loadgen
deploy/base-image.sh >&2
mkdir "$work/context"
cp target/release/rampart "$work/context/"
strip "$work/context/"* 2>/dev/null || true
docker build -q -t rampart:local -f deploy/Dockerfile.local "$work/context" >/dev/null 2>&1
for image in postgres redis haproxy; do
  docker build -q -t "rampart-$image:local" -f "deploy/Dockerfile.$image-local" deploy >/dev/null 2>&1
done

say "starting the cluster"
down
"${compose[@]}" up -d --scale worker=3 >&2
for _ in $(seq 120); do curl -fsS -o /dev/null "$base/ready" 2>/dev/null && break; sleep 0.5; done
curl -fsS -o /dev/null "$base/ready" || { "${compose[@]}" logs --tail 50 >&2; say "HAProxy never reached a ready gateway"; exit 1; }
# Every gateway sees the three, hears their signals, and has three healthy workers.
joined() {
  curl -fsS "${admin_auth[@]}" "http://127.0.0.1:$1/admin/cluster" 2>/dev/null \
    | python3 -c 'import json,sys; c=json.load(sys.stdin); sys.exit(0 if c["live"] == 3 and c["signals"] else 1)'
}
for port in "${admin_ports[@]}"; do
  for _ in $(seq 60); do joined "$port" && break; sleep 0.5; done
  joined "$port" || { "${compose[@]}" logs --tail 30 >&2; say "the gateway on admin port $port did not join"; exit 1; }
done
say "three gateways joined: $(curl -fsS "${admin_auth[@]}" "http://127.0.0.1:$RAMPART_ADMIN_PORT/admin/cluster" \
  | python3 -c 'import json,sys; print(", ".join(m["id"] for m in json.load(sys.stdin)["members"]))')"

load=target/release/rampart-load
# The cluster-wide limit: 200/s (bursts of 40) for one client over three gateways, offered 400/s.
limit_rate=200 limit_seconds=20
"$load" --rate 400 -d "${limit_seconds}s" -c 32 --timeout 5s --json "$base/api/process?data=limit" > "$work/limit.json"
admitted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["statuses"].get("200", 0))' "$work/limit.json")
admitted_rate=$(python3 -c "print(round(($admitted - 40) / $limit_seconds, 1))")
say "limit of $limit_rate/s across 3 gateways admitted $admitted_rate/s: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["statuses"])' "$work/limit.json")"
sleep 1

started=$(date +%s.%N)
"$load" --rate 50 -d 75s -c 32 --timeout 10s -H 'Request-Timeout: 5' --json "$base/api/process?data=e2e" > "$work/sync.json" &
sync_pid=$!
"$load" --rate 60 -n 3000 -c 32 --timeout 20s -m POST -H 'Content-Type: application/json' \
  -b '{"kind": "sleep", "payload": {"ms": 500}, "timeout_ms": 5000}' --json "$base/api/jobs" > "$work/jobs.json" &
jobs_pid=$!

store_network=$(docker network ls -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.network=store")
sleep 8
docker kill "$(container gateway-3)" >/dev/null
killed_at=$(now); say "killed gateway-3 at $killed_at s"
sleep 6
island=$(container gateway-2)
docker network disconnect "$store_network" "$island"
cut_at=$(now); say "cut gateway-2 off PostgreSQL at $cut_at s"
sleep 15
docker network connect "$store_network" "$island"
say "gateway-2 back on PostgreSQL's network at $(now) s"
sleep 5
docker restart "$(container postgres)" >/dev/null
restarted_at=$(now); say "restarted PostgreSQL at $restarted_at s"
sleep 8
docker stop "$(container redis)" >/dev/null
redis_at=$(now); say "stopped Redis at $redis_at s"
sleep 10
docker start "$(container redis)" >/dev/null
say "started Redis again at $(now) s"

wait "$jobs_pid" "$sync_pid"
accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["statuses"].get("202", 0))' "$work/jobs.json")
say "$accepted jobs accepted ($(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["statuses"], r["errors"])' "$work/jobs.json")); waiting for them to end"
pg=$(container postgres)
counts() { docker exec "$pg" psql -U rampart -d rampart -tAc \
  "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*), coalesce(sum(attempt) - count(*), 0) FROM jobs" 2>/dev/null || echo "0|0|0"; }
for _ in $(seq 180); do
  IFS='|' read -r succeeded total repeats <<< "$(counts)"
  [[ $succeeded -ge $total && $total -ge $accepted ]] && break
  sleep 1
done
IFS='|' read -r succeeded total repeats <<< "$(counts)"
say "jobs by status: $(docker exec "$pg" psql -U rampart -d rampart -tAc \
  "SELECT string_agg(status || ': ' || n, ', ') FROM (SELECT status, count(*) AS n FROM jobs GROUP BY status) AS t")"

# A counter summed over the two gateways still up (the killed one ran nothing after its death).
summed() {
  local total=0 port n
  for port in "$RAMPART_ADMIN_PORT" "$RAMPART_ADMIN_PORT_2"; do
    n=$(curl -fsS "${admin_auth[@]}" "http://127.0.0.1:$port/metrics" | awk -v name="$1" '$1 == name {s += $2} END {print s + 0}')
    total=$((total + ${n%.*}))
  done
  echo "$total"
}
# Attempts that ran on past the lease their gateway knew it held: must be none. Outcomes refused
# as stale are attempts that ended in time but were recorded after the job was rescued (the
# cut-off gateway's finished jobs, rescued while it could not write): run twice, never at once.
past_lease=$(summed rampart_jobs_attempts_past_lease_total)
stale=$(summed rampart_jobs_stale_completions_total)
lost=$(curl -fsS "${admin_auth[@]}" "http://127.0.0.1:$RAMPART_ADMIN_PORT_2/metrics" | awk '/^rampart_jobs_leases_lost_total/ {s += $2} END {print s + 0}')
outages=$(curl -fsS "${admin_auth[@]}" "http://127.0.0.1:$RAMPART_ADMIN_PORT_2/metrics" | awk '/^rampart_store_outages_total/ {s += $2} END {print s + 0}')
read -r sync_requests sync_failed <<< "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["requests"], r["failed"])' "$work/sync.json")"
say "sync answers by status: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["statuses"], r["errors"])' "$work/sync.json")"

down
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project" | wc -l)

ok=true
# Refused while no gateway reached the store (503), or cut short by the gateway killed while
# answering (502: the job may exist, as with any lost answer; a client would retry it with an
# Idempotency-Key).
refused=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["statuses"]; print(sum(n for code, n in s.items() if code not in ("202", "502", "503")))' "$work/jobs.json")
[[ $refused -eq 0 && $accepted -ge 2700 ]] || { say "$accepted of 3000 jobs accepted, $refused answered other than 202, 502 or 503"; ok=false; }
[[ $succeeded -eq $total && $total -ge $accepted ]] || { say "$succeeded of $total jobs succeeded ($accepted accepted)"; ok=false; }
[[ $past_lease -eq 0 ]] || { say "$past_lease attempts ran past their lease"; ok=false; }
python3 -c "import sys; sys.exit(0 if abs($admitted_rate - $limit_rate) <= 0.1 * $limit_rate else 1)" \
  || { say "the limit admitted $admitted_rate/s, not within 10% of $limit_rate/s"; ok=false; }
python3 -c "import sys; sys.exit(0 if $sync_failed <= 0.02 * $sync_requests else 1)" \
  || { say "$sync_failed of $sync_requests sync requests failed"; ok=false; }
[[ $left -eq 0 ]] || { say "compose down left $left containers"; ok=false; }
summary="e2e-cluster: $succeeded/$total durable jobs succeeded through 3 gateways ($accepted acknowledged, $((3000 - accepted)) refused while the store was out of reach or cut short by the killed gateway, $repeats ran again after a fault, $past_lease attempts past their lease, $stale outcomes refused as stale, $lost jobs stopped on the cut-off gateway, $outages outage(s) seen there); sync $sync_requests requests, $sync_failed failed; limit of $limit_rate/s across the gateways admitted $admitted_rate/s; gateway killed at ${killed_at%.*} s, another cut off PostgreSQL at ${cut_at%.*} s for 15 s, PostgreSQL restarted at ${restarted_at%.*} s, Redis stopped at ${redis_at%.*} s for 10 s; compose down left $left containers"
if $ok; then echo "$summary — PASS"; else echo "$summary — FAIL"; exit 1; fi
