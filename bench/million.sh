#!/usr/bin/env bash
# The article's first demo, side by side: a million concurrent 1 ms sleeps as Go goroutines, and
# as jobs through Rampart's worker engine. Runs both ROUNDS times, alternating, and prints each
# run's wall time and peak RSS, then the medians.
#
#   bench/million.sh                 # needs `go` (Debian: apt-get install golang-go)
#   ROUNDS=7 MILLION_GO=path/to/million bench/million.sh
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-5}
go_src=${MILLION_GO:-../shared/bench/anchors/million}
command -v go >/dev/null || { echo "go is not installed (Debian: apt-get install -y golang-go)" >&2; exit 1; }
[[ -f $go_src/main.go ]] || { echo "no Go program at $go_src (set MILLION_GO)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$go_src" && go build -o "$work/million-go" .)
cargo build --release --quiet -p rampart-worker --example million
rampart=target/release/examples/million

# GNU time: elapsed seconds and maximum resident set size in KB.
measure() { /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1; }

echo "round  go_wall_s  go_peak_MB  rampart_wall_s  rampart_peak_MB"
for round in $(seq 1 "$rounds"); do
  read -r go_wall go_kb < <(measure "$work/million-go")
  read -r rp_wall rp_kb < <(measure "$rampart")
  printf "%5d  %9s  %10.1f  %14s  %15.1f\n" "$round" "$go_wall" "$(bc -l <<< "$go_kb/1000")" "$rp_wall" "$(bc -l <<< "$rp_kb/1000")"
  echo "$go_wall $go_kb $rp_wall $rp_kb" >> "$work/rounds"
done

median() { sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
go_wall=$(cut -d' ' -f1 "$work/rounds" | median)
go_kb=$(cut -d' ' -f2 "$work/rounds" | median)
rp_wall=$(cut -d' ' -f3 "$work/rounds" | median)
rp_kb=$(cut -d' ' -f4 "$work/rounds" | median)
printf "median: go %.2f s %.1f MB; rampart %.2f s %.1f MB; rampart/go wall %.2fx, peak RSS %.2fx\n" \
  "$go_wall" "$(bc -l <<< "$go_kb/1000")" "$rp_wall" "$(bc -l <<< "$rp_kb/1000")" \
  "$(bc -l <<< "$rp_wall/$go_wall")" "$(bc -l <<< "$rp_kb/$go_kb")"
