#!/usr/bin/env bash
# The full topology on this machine's Docker engine, offline: PostgreSQL, a gateway, three workers
# found by DNS, Prometheus. Under a steady stream of sync requests and 1,000 durable jobs, one
# worker is killed and another cut off the network. Every accepted job must succeed, sync errors
# must stay under 1% outside the 10 s after each fault, Prometheus must scrape the gateway, and
# `compose down` must leave nothing running. The last line printed is the summary.
#
#   deploy/e2e.sh      # needs Docker, root (debootstrap), Debian's mirror for the base image
set -euo pipefail
cd "$(dirname "$0")/.."
project=rampart-e2e
export RAMPART_HTTP_PORT=${RAMPART_HTTP_PORT:-18480} RAMPART_ADMIN_PORT=${RAMPART_ADMIN_PORT:-18481}
export RAMPART_PROMETHEUS_PORT=${RAMPART_PROMETHEUS_PORT:-18490}
base=http://127.0.0.1:$RAMPART_HTTP_PORT
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
compose+=(-p "$project" -f docker-compose.yml -f deploy/docker-compose.offline.yml --profile metrics)
work=$(mktemp -d)
# The admin listener's token (docker-compose.yml mounts it into the gateway and Prometheus).
export RAMPART_ADMIN_TOKEN_FILE=${RAMPART_ADMIN_TOKEN_FILE:-$work/admin-token}
[[ -s $RAMPART_ADMIN_TOKEN_FILE ]] || head -c 32 /dev/urandom | base64 > "$RAMPART_ADMIN_TOKEN_FILE"
chmod 644 "$RAMPART_ADMIN_TOKEN_FILE"
admin_auth=(-H "Authorization: Bearer $(cat "$RAMPART_ADMIN_TOKEN_FILE")")
say() { echo "e2e: $*" >&2; }
down() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap 'down; rm -rf "$work"' EXIT

say "building the binaries and the local images"
cargo build --release --quiet -p rampart -p rampart-loadgen
deploy/base-image.sh >&2
mkdir "$work/context"
cp target/release/rampart "$work/context/"
strip "$work/context/"* 2>/dev/null || true
docker build -q -t rampart:local -f deploy/Dockerfile.local "$work/context" >/dev/null 2>&1
# Docker's layer cache makes these quick after the first run (the apt-get layers are reused).
docker build -q -t rampart-postgres:local -f deploy/Dockerfile.postgres-local deploy >/dev/null 2>&1
docker build -q -t rampart-prometheus:local -f deploy/Dockerfile.prometheus-local deploy >/dev/null 2>&1
docker build -q -t rampart-redis:local -f deploy/Dockerfile.redis-local deploy >/dev/null 2>&1

say "starting the topology"
down
"${compose[@]}" up -d --scale worker=3 >&2
for _ in $(seq 120); do curl -fsS -o /dev/null "$base/ready" 2>/dev/null && break; sleep 0.5; done
curl -fsS -o /dev/null "$base/ready" || { "${compose[@]}" logs --tail 50 >&2; say "the gateway never became ready"; exit 1; }
# All three workers in the gateway's set and healthy.
for _ in $(seq 60); do
  healthy=$(curl -fsS "${admin_auth[@]}" "http://127.0.0.1:$RAMPART_ADMIN_PORT/admin/backends" | python3 -c \
    'import json,sys; print(sum(1 for b in json.load(sys.stdin)["pools"][0]["backends"] if b.get("health") == "healthy"))')
  [[ $healthy -ge 3 ]] && break
  sleep 0.5
done
say "$healthy workers healthy behind the gateway"

load=target/release/rampart-load
started=$(date +%s.%N)
"$load" --rate 100 -d 45s -c 32 --timeout 5s -H 'Request-Timeout: 2' --json "$base/api/process?data=e2e" > "$work/sync.json" &
sync_pid=$!
"$load" --rate 40 -n 1000 -c 16 --timeout 10s -m POST -H 'Content-Type: application/json' \
  -b '{"kind": "sleep", "payload": {"ms": 1500}, "timeout_ms": 4000}' --json "$base/api/jobs" > "$work/jobs.json" &
jobs_pid=$!

workers=($(docker ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=worker"))
network=$(docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "${workers[1]}" | awk '{print $1}')
sleep 8
kill_at=$(python3 -c "import time; print(time.time() - $started)")
docker kill "${workers[0]}" >/dev/null
say "killed worker ${workers[0]:0:12} at ${kill_at%.*} s"
sleep 8
cut_at=$(python3 -c "import time; print(time.time() - $started)")
docker network disconnect "$network" "${workers[1]}"
say "cut worker ${workers[1]:0:12} off $network at ${cut_at%.*} s"

wait "$jobs_pid" "$sync_pid"
accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["statuses"].get("202", 0))' "$work/jobs.json")
say "$accepted jobs accepted; waiting for them to end"
pg=$(docker ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=postgres")
counts() { docker exec "$pg" psql -U rampart -d rampart -tAc \
  "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*), coalesce(sum(attempt) - count(*), 0) FROM jobs"; }
for _ in $(seq 180); do
  IFS='|' read -r succeeded total repeats <<< "$(counts)"
  [[ $succeeded -ge $accepted && $total -ge $accepted ]] && break
  sleep 1
done
IFS='|' read -r succeeded total repeats <<< "$(counts)"
say "jobs by attempts taken: $(docker exec "$pg" psql -U rampart -d rampart -tAc \
  "SELECT string_agg(attempt || ' attempt(s): ' || n, ', ' ORDER BY attempt) FROM (SELECT attempt, count(*) AS n FROM jobs GROUP BY attempt) AS t")"

sync_summary=$(python3 - "$work/sync.json" "$kill_at" "$cut_at" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
faults = [float(sys.argv[2]), float(sys.argv[3])]
rates, failures = report["throughput_timeline"], report["failure_timeline"]
step = 0.1
inside = outside = failed_inside = failed_outside = 0
for index, rate in enumerate(rates):
    done = round(rate * step)
    failed = failures[index] if index < len(failures) else 0
    at = index * step
    if any(fault <= at < fault + 10 for fault in faults):
        inside += done; failed_inside += failed
    else:
        outside += done; failed_outside += failed
share = lambda failed, done: 100.0 * failed / done if done else 0.0
print(f"{report['requests']} {share(failed_outside, outside):.2f} {share(failed_inside, inside):.2f} {report['failed']}")
PY
)
read -r sync_requests outside_pct inside_pct sync_failed <<< "$sync_summary"
say "sync answers by status: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["statuses"], r["errors"])' "$work/sync.json")"
say "sync failures by second: $(python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["failure_timeline"]; s={}
for i, n in enumerate(f):
    if n: s[i // 10] = s.get(i // 10, 0) + n
print(s)' "$work/sync.json")"

# The value of a Prometheus query, as an integer (0 when it has no result or cannot be asked).
prometheus() {
  curl -fsS "http://127.0.0.1:$RAMPART_PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$1" 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)' \
    || echo 0
}
scraped=0
for _ in $(seq 30); do
  scraped=$(prometheus 'sum(up{job="rampart-gateway"})')
  [[ $scraped -ge 1 ]] && break
  sleep 1
done
requests_seen=$(prometheus 'sum(rampart_http_requests_total)')

down
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project" | wc -l)
networks=$(docker network ls -q --filter "label=com.docker.compose.project=$project" | wc -l)

ok=true
[[ $accepted -eq 1000 ]] || { say "only $accepted of 1000 jobs were accepted"; ok=false; }
[[ $succeeded -eq $accepted && $total -eq $accepted ]] || { say "$succeeded of $total jobs succeeded"; ok=false; }
python3 -c "import sys; sys.exit(0 if float('$outside_pct') < 1.0 else 1)" || { say "sync errors outside the faults: $outside_pct%"; ok=false; }
[[ $scraped -ge 1 && $requests_seen -gt 0 ]] || { say "Prometheus did not scrape the gateway"; ok=false; }
[[ $left -eq 0 && $networks -eq 0 ]] || { say "compose down left $left containers and $networks networks"; ok=false; }
summary="e2e: $succeeded/$accepted durable jobs succeeded ($repeats ran again after a fault); sync $sync_requests requests, $sync_failed failed: ${outside_pct}% outside the faults, ${inside_pct}% within 10 s of them; worker killed at ${kill_at%.*} s, another cut off at ${cut_at%.*} s; Prometheus scraped the gateway ($requests_seen requests counted); compose down left $left containers"
if $ok; then echo "$summary — PASS"; else echo "$summary — FAIL"; exit 1; fi
