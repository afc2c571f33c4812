#!/usr/bin/env bash
# Times every console page with a large store: fills it with JOBS jobs (700,000 queued, 200,000
# succeeded, 100,000 dead with their attempts, 8 kinds, 4 tenants, every tenth with an
# idempotency key), starts a release gateway on it, and prints the median and max of 7 requests
# to each page. The gateway's worker is unreachable, so nothing runs and the store stays as filled.
#
#   bench/console-pages.sh                                        # SQLite, 1,000,000 jobs
#   STORE=postgres://postgres@127.0.0.1:5432/bench bench/console-pages.sh
#   JOBS=100000 bench/console-pages.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-1000000}
DIR=$(mktemp -d)
STORE=${STORE:-sqlite://$DIR/console.db}
trap 'kill $GATEWAY 2>/dev/null || true; rm -rf "$DIR"' EXIT

cargo build --release -q -p rampart-gateway
cargo build --release -q -p rampart-jobstore --example listing
target/release/examples/listing --store "$STORE" --jobs "$JOBS" --fill-only

target/release/rampart-gateway --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --workers http://127.0.0.1:9 --store "$STORE" > "$DIR/gateway.out" 2> "$DIR/gateway.log" &
GATEWAY=$!
for _ in $(seq 100); do grep -q 'listening on' "$DIR/gateway.out" 2>/dev/null && break; sleep 0.2; done
LINE=$(grep 'listening on' "$DIR/gateway.out")
PUBLIC=$(echo "$LINE" | sed -E 's/.*listening on ([^ ]+).*/\1/')
ADMIN=$(echo "$LINE" | sed -E 's/.*\(admin ([^)]+)\).*/\1/')

# The first count of a million jobs runs in the background; wait for it so pages show it.
for _ in $(seq 300); do
  curl -s "http://$ADMIN/console" | grep -q 'the count took' && break
  sleep 0.5
done
COUNTED=$(curl -s "http://$ADMIN/console" | grep -o 'the count took [^)]*' | head -1)

ID=$(curl -s "http://$PUBLIC/api/jobs?status=dead&limit=1" | sed -E 's/.*"id":"([^"]+)".*/\1/')
PREFIX=${ID:0:13}
time_page() {
  local name=$1 path=$2 times
  times=$(for _ in $(seq 7); do curl -s -o /dev/null -w '%{time_total}\n' "http://$ADMIN$path"; done | sort -n)
  printf '%-42s median %6.1f ms  max %6.1f ms\n' "$name" \
    "$(echo "$times" | sed -n 4p | awk '{print $1 * 1000}')" "$(echo "$times" | tail -1 | awk '{print $1 * 1000}')"
}
echo "store: ${STORE%%://*}, $JOBS jobs; background count: $COUNTED"
time_page "overview" "/console"
time_page "jobs (newest 50)" "/console/jobs"
time_page "jobs ?status=dead" "/console/jobs?status=dead"
time_page "jobs ?status=queued" "/console/jobs?status=queued"
time_page "jobs ?kind=kind-3" "/console/jobs?kind=kind-3"
time_page "jobs ?status=succeeded&kind=kind-5" "/console/jobs?status=succeeded&kind=kind-5"
time_page "jobs ?tenant=tenant-2" "/console/jobs?tenant=tenant-2"
time_page "jobs ?q=<id prefix>" "/console/jobs?q=$PREFIX"
time_page "jobs ?q=order-5000 (key prefix)" "/console/jobs?q=order-5000"
time_page "jobs ?q=order- (100,000 keys match)" "/console/jobs?q=order-"
time_page "jobs ?from=<1 min ago>" "/console/jobs?from=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M)"
time_page "jobs, a page from the middle" "/console/jobs?cursor=$(curl -s "http://$PUBLIC/api/jobs?limit=1000&cursor=$ID" | grep -o '"next_cursor":"[^"]*"' | cut -d'"' -f4)"
time_page "a dead job's page" "/console/jobs/$ID"
time_page "workers and upstreams" "/console/workers"
time_page "schedules and kinds" "/console/schedules"
