#!/usr/bin/env bash
# The article's monitoring script, for Rampart: what a running gateway or worker is doing, read
# from its admin listener. The CPU profile is pprof protobuf, so `go tool pprof` reads it (the
# top functions are printed when Go is installed); a flame graph is saved beside it.
#
#   bench/profile.sh                      # the gateway's admin listener, 10 s of CPU profile
#   bench/profile.sh 127.0.0.1:9902 30    # a worker's admin listener (its ready line prints it), 30 s
set -euo pipefail
admin=${1:-127.0.0.1:9901}
seconds=${2:-10}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

echo "=== Rampart at $admin ==="
echo "--- runtimes and process (tokio tasks are what goroutines are in Go)"
curl -fsS "http://$admin/debug/runtime?window=1s" | python3 -m json.tool

echo "--- CPU profile over ${seconds}s"
curl -fsS -o "$out/cpu.pb" "http://$admin/debug/pprof/profile?seconds=$seconds"
if command -v go >/dev/null; then
  go tool pprof -top "$out/cpu.pb" 2>/dev/null | head -25
else
  echo "saved $out/cpu.pb; read it with: go tool pprof -top $out/cpu.pb"
fi
curl -fsS -o "$out/flamegraph.svg" "http://$admin/debug/pprof/profile?seconds=$seconds&format=svg"
echo "flame graph: $out/flamegraph.svg"

echo "--- memory, CPU time, jobs and requests"
curl -fsS "http://$admin/metrics" | grep -E '^rampart_(process_|http_requests_total|worker_jobs_total|worker_pool_busy|jobs_(queued|running))' | head -40
