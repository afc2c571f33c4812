#!/usr/bin/env bash
# The REST -> gRPC -> worker echo path beside nginx proxying to the same kind of backend, in one
# run: rounds alternate between the two so machine drift hits both alike.
#
#   bench/api-vs-proxy.sh            # needs go, nginx and wrk (apt-get install golang-go nginx wrk)
#   ROUNDS=5 DURATION=5s CONNS=64 bench/api-vs-proxy.sh
#   BASELINE=/path/to/old/bin bench/api-vs-proxy.sh   # also the same path through older binaries
#                                                      # (rampart-gateway, rampart-worker in that dir)
#
# Prints, per target, median requests/s, median p99, and CPU microseconds per request of the
# target itself (nginx's processes; the gateway) and of what is behind it (the two Go backends;
# the two workers).
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
declare -A own behind
"$work/backend" -addr 127.0.0.1:19201 & pids+=($!); behind[nginx]=$!
"$work/backend" -addr 127.0.0.1:19202 & pids+=($!); behind[nginx]+=" $!"
target/release/rampart-worker --listen 127.0.0.1:19251 >/dev/null 2>&1 & pids+=($!); behind[api]=$!
target/release/rampart-worker --listen 127.0.0.1:19252 >/dev/null 2>&1 & pids+=($!); behind[api]+=" $!"
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
sleep 0.3
own[nginx]=$(cat "$work/nginx.pid")
cat > "$work/gateway.toml" <<CONF
listen = "127.0.0.1:19240"
admin_listen = "127.0.0.1:19241"
workers = ["http://127.0.0.1:19251", "http://127.0.0.1:19252"]
CONF
(cd "$work" && exec "$root/target/release/rampart-gateway" --config "$work/gateway.toml" --store "sqlite://$work/now.db") >/dev/null 2>&1 & pids+=($!); own[api]=$!
if [[ -n ${BASELINE:-} ]]; then
  "$BASELINE/rampart-worker" --listen 127.0.0.1:19261 >/dev/null 2>&1 & pids+=($!); behind[baseline]=$!
  "$BASELINE/rampart-worker" --listen 127.0.0.1:19262 >/dev/null 2>&1 & pids+=($!); behind[baseline]+=" $!"
  (cd "$work" && exec "$BASELINE/rampart-gateway" --listen 127.0.0.1:19245 --admin-listen 127.0.0.1:19246 \
    --workers http://127.0.0.1:19261,http://127.0.0.1:19262 --store "sqlite://$work/before.db") >/dev/null 2>&1 & pids+=($!)
  own[baseline]=$!
fi
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"kind":"echo","payload":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
LUA
for port in 19240 ${BASELINE:+19245}; do
  for _ in $(seq 50); do curl -fsS -o /dev/null -X POST -H 'content-type: application/json' -d '{"kind":"echo"}' "http://127.0.0.1:$port/api/process" 2>/dev/null && break; sleep 0.2; done
done

# CPU ticks (user + system, all threads) of some processes and of their children.
ticks() {
  local all=() p
  for p in "$@"; do all+=("$p"); all+=($(pgrep -P "$p" 2>/dev/null)); done
  for p in "${all[@]}"; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'
}
hz=$(getconf CLK_TCK)
# run NAME WRK-ARGS...: one round against a target, with its CPU and its backends' per request
run() {
  local name=$1 out o0 o1 b0 b1; shift
  o0=$(ticks ${own[$name]}); b0=$(ticks ${behind[$name]})
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$@" 2>&1)
  o1=$(ticks ${own[$name]}); b1=$(ticks ${behind[$name]})
  awk -v name="$name" -v o0="$o0" -v o1="$o1" -v b0="$b0" -v b1="$b1" -v hz="$hz" '
    /Requests\/sec/ {r=$2} $1=="99%" {p=$2} /requests in/ {n=$1}
    END {printf "%s %s %s %.2f %.2f\n", name, r, p, (o1-o0)*1e6/hz/n, (b1-b0)*1e6/hz/n}' <<<"$out" >> "$work/results"
}
for round in $(seq "$ROUNDS"); do
  run nginx http://127.0.0.1:19220/
  run api -s "$work/post.lua" http://127.0.0.1:19240/api/process
  if [[ -n ${BASELINE:-} ]]; then
    run baseline -s "$work/post.lua" http://127.0.0.1:19245/api/process
  fi
done
python3 - "$work/results" <<'PY'
import statistics, sys, re
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups(); n = float(n)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n
rows = {}
for line in open(sys.argv[1]):
    name, rps, p99, cpu, behind = line.split()
    rows.setdefault(name, []).append((float(rps), ms(p99), float(cpu), float(behind)))
med = lambda vals, i: statistics.median(v[i] for v in vals)
for name, vals in rows.items():
    print(f"{name:<8} median {med(vals, 0):>8.0f} req/s  p99 {med(vals, 1):.2f} ms  "
          f"cpu {med(vals, 2):.2f} us/req  behind it {med(vals, 3):.2f} us/req")
median = lambda name: statistics.median(v[0] for v in rows[name])
print(f"api/nginx throughput ratio: {median('api') / median('nginx'):.2f}")
print(f"api/nginx cpu per request ratio: {med(rows['api'], 2) / med(rows['nginx'], 2):.2f}")
if "baseline" in rows:
    print(f"api/baseline throughput ratio: {median('api') / median('baseline'):.2f}")
PY
