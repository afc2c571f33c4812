#!/usr/bin/env bash
# rampart-load beside wrk on the same fast target (nginx answering a fixed 200), in one run:
# rounds alternate between the two tools so machine drift hits both alike. Then an open-loop run
# checks that --rate holds.
#
#   bench/load-vs-wrk.sh                  # needs nginx and wrk (apt-get install nginx wrk)
#   ROUNDS=5 DURATION=5s CONNS=64 THREADS=2 RATE=20000 bench/load-vs-wrk.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5s} CONNS=${CONNS:-64} THREADS=${THREADS:-2} RATE=${RATE:-20000}
for tool in nginx wrk; do command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }; done
work=$(mktemp -d)
cleanup() { [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet -p rampart-loadgen
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:19501; location / { return 200 "hello\n"; } } }
CONF
nginx -c "$work/nginx.conf"
url=http://127.0.0.1:19501/
for _ in $(seq 50); do curl -fsS -o /dev/null "$url" 2>/dev/null && break; sleep 0.1; done

for round in $(seq "$ROUNDS"); do
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$url" | awk '/Requests\/sec/ {print "wrk", $2}' >> "$work/results"
  target/release/rampart-load -t "$THREADS" -c "$CONNS" -d "$DURATION" --json "$url" \
    | python3 -c 'import json,sys; print("rampart-load", json.load(sys.stdin)["qps"])' >> "$work/results"
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps = line.split()
    rows.setdefault(name, []).append(float(rps))
for name, values in rows.items():
    print(f"{name:13} median {statistics.median(values):>10.0f} req/s  ({', '.join(f'{v:.0f}' for v in values)})")
print(f"rampart-load/wrk closed-loop throughput ratio: {statistics.median(rows['rampart-load']) / statistics.median(rows['wrk']):.2f}")
PY
target/release/rampart-load -t "$THREADS" -c "$CONNS" -d "$DURATION" --rate "$RATE" --json "$url" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin); a=r["rate_asked"]; q=r["qps"]; p=r["latency_ms"]["p99"]; print(f"--rate {a:.0f}: held {q:.1f} req/s ({100*(q-a)/a:+.2f}%), p99 {p:.2f} ms")'
