#!/usr/bin/env bash
# The REST -> gRPC -> worker echo path beside nginx proxying to the same kind of backend, in one
# run: rounds alternate between the two so machine drift hits both alike.
#
#   bench/api-vs-proxy.sh            # needs go, nginx and wrk (apt-get install golang-go nginx wrk)
#   ROUNDS=5 DURATION=5s CONNS=64 bench/api-vs-proxy.sh
#   BASELINE=/path/to/old/bin bench/api-vs-proxy.sh   # also the same path through older binaries
#                                                      # (rampart-gateway, rampart-worker in that dir)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5s} CONNS=${CONNS:-64}
backend_src=${BACKEND_SRC:-../shared/bench/anchors/backend}
for tool in go nginx wrk; do command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }; done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet -p rampart-gateway -p rampart-worker
(cd "$backend_src" && GOFLAGS=-mod=mod go build -o "$work/backend" .)
"$work/backend" -addr 127.0.0.1:19201 & pids+=($!)
"$work/backend" -addr 127.0.0.1:19202 & pids+=($!)
target/release/rampart-worker --listen 127.0.0.1:19251 >/dev/null 2>&1 & pids+=($!)
target/release/rampart-worker --listen 127.0.0.1:19252 >/dev/null 2>&1 & pids+=($!)
cat > "$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backends { server 127.0.0.1:19201; server 127.0.0.1:19202; keepalive 256; }
  server { listen 127.0.0.1:19220; location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -c "$work/nginx.conf"
cat > "$work/gateway.toml" <<CONF
listen = "127.0.0.1:19240"
admin_listen = "127.0.0.1:19241"
workers = ["http://127.0.0.1:19251", "http://127.0.0.1:19252"]
CONF
(cd "$work" && exec "$root/target/release/rampart-gateway" --config "$work/gateway.toml" --store "sqlite://$work/now.db") >/dev/null 2>&1 & pids+=($!)
if [[ -n ${BASELINE:-} ]]; then
  "$BASELINE/rampart-worker" --listen 127.0.0.1:19261 >/dev/null 2>&1 & pids+=($!)
  "$BASELINE/rampart-worker" --listen 127.0.0.1:19262 >/dev/null 2>&1 & pids+=($!)
  (cd "$work" && exec "$BASELINE/rampart-gateway" --listen 127.0.0.1:19245 --admin-listen 127.0.0.1:19246 \
    --workers http://127.0.0.1:19261,http://127.0.0.1:19262 --store "sqlite://$work/before.db") >/dev/null 2>&1 & pids+=($!)
fi
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"kind":"echo","payload":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
LUA
for port in 19240 ${BASELINE:+19245}; do
  for _ in $(seq 50); do curl -fsS -o /dev/null -X POST -H 'content-type: application/json' -d '{"kind":"echo"}' "http://127.0.0.1:$port/api/process" 2>/dev/null && break; sleep 0.2; done
done

run() { wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$@" 2>&1 | awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} END {print r, p}'; }
for round in $(seq "$ROUNDS"); do
  echo "nginx $(run http://127.0.0.1:19220/)" >> "$work/results"
  echo "api $(run -s "$work/post.lua" http://127.0.0.1:19240/api/process)" >> "$work/results"
  if [[ -n ${BASELINE:-} ]]; then
    echo "baseline $(run -s "$work/post.lua" http://127.0.0.1:19245/api/process)" >> "$work/results"
  fi
done
python3 - "$work/results" <<'PY'
import statistics, sys, re
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups(); n = float(n)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n
rows = {}
for line in open(sys.argv[1]):
    name, rps, p99 = line.split()
    rows.setdefault(name, []).append((float(rps), ms(p99)))
for name, vals in rows.items():
    print(f"{name:<8} median {statistics.median(v[0] for v in vals):>8.0f} req/s  p99 {statistics.median(v[1] for v in vals):.2f} ms")
median = lambda name: statistics.median(v[0] for v in rows[name])
print(f"api/nginx throughput ratio: {median('api') / median('nginx'):.2f}")
if "baseline" in rows:
    print(f"api/baseline throughput ratio: {median('api') / median('baseline'):.2f}")
PY
