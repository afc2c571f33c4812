#!/usr/bin/env bash
# TLS and authentication, measured side by side in one run (rounds interleave the targets so
# machine drift hits them alike):
#
#   1. HTTPS through the gateway vs nginx, the same certificate (ECDSA P-256) and the same backend:
#      keep-alive requests per second, and new connections per second (`Connection: close`: one
#      full TLS handshake per request), each measured with wrk and with rampart-load.
#   2. The gateway proxying plain HTTP with authentication off, with an API key, and with a JWT
#      (RS256, key set from a file): requests per second and p99, by wrk.
#
#   bench/tls-auth.sh            # needs go, nginx, wrk, openssl and python3
#   ROUNDS=5 DURATION=5s CONNS=64 bench/tls-auth.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5s} CONNS=${CONNS:-64}
backend_src=${BACKEND_SRC:-../shared/bench/anchors/backend}
for tool in go nginx wrk openssl python3; do command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }; done
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet -p rampart-gateway -p rampart-loadgen -p rampart
(cd "$backend_src" && GOFLAGS=-mod=mod go build -o "$work/backend" .)
"$work/backend" -addr 127.0.0.1:19601 & pids+=($!)

# One certificate for both servers: ECDSA P-256, for localhost.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

cat > "$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backends { server 127.0.0.1:19601; keepalive 256; }
  server {
    listen 127.0.0.1:19620 ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backends; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
nginx -c "$work/nginx.conf"

# An API key, and an RS256 key pair with its key set and a token for an hour.
key_line=$(target/release/rampart keys new --id bench --tenant bench)
api_key=$(sed -n 2p <<< "$key_line" | sed 's/^# //')
api_hash=$(grep '^hash' <<< "$key_line" | cut -d'"' -f2)
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
modulus=$(openssl rsa -in "$work/rsa.pem" -noout -modulus | cut -d= -f2)
jwt=$(python3 - "$work" "$modulus" <<'PY'
import base64, json, subprocess, sys, time
work, modulus = sys.argv[1], sys.argv[2]
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
n = b64(bytes.fromhex(modulus))
json.dump({"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256", "n": n, "e": "AQAB"}]}, open(f"{work}/jwks.json", "w"))
header = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "bench"}).encode())
claims = b64(json.dumps({"iss": "bench", "aud": "rampart", "tenant": "bench", "exp": int(time.time()) + 3600}).encode())
signed = f"{header}.{claims}".encode()
signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{work}/rsa.pem"], input=signed, capture_output=True, check=True).stdout
print(f"{header}.{claims}.{b64(signature)}")
PY
)

gateway() { # name port extra-config
  cat > "$work/$1.toml" <<CONF
listen = "127.0.0.1:$2"
admin_listen = "127.0.0.1:$(($2 + 1))"
workers = ["http://127.0.0.1:1"]
[[routes]]
prefix = "/"
upstreams = ["http://127.0.0.1:19601"]
$3
CONF
  (cd "$work" && exec "$root/target/release/rampart-gateway" --config "$work/$1.toml" --store "sqlite://$work/$1.db") \
    >"$work/$1.log" 2>&1 & pids+=($!)
}
gateway tls 19640 "[tls]
cert = \"$work/cert.pem\"
key = \"$work/key.pem\""
gateway open 19650 ""
gateway key 19660 "[auth]
[[auth.keys]]
id = \"bench\"
tenant = \"bench\"
hash = \"$api_hash\""
gateway jwt 19670 "[auth.jwt]
jwks = \"$work/jwks.json\"
issuer = \"bench\"
audience = \"rampart\""
for port in 19650 19660 19670; do
  for _ in $(seq 50); do curl -sS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null && break; sleep 0.2; done
done
for port in 19640 19620; do
  for _ in $(seq 50); do curl -ksS -o /dev/null "https://localhost:$port/" 2>/dev/null && break; sleep 0.2; done
done
curl -fsS -o /dev/null -H "X-Api-Key: $api_key" http://127.0.0.1:19660/ || { echo "the key gateway refuses the key" >&2; exit 1; }
curl -fsS -o /dev/null -H "Authorization: Bearer $jwt" http://127.0.0.1:19670/ || { echo "the JWT gateway refuses the token" >&2; exit 1; }

wrk_run() { wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$@" 2>&1 | awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} END {print r, p}'; }
load_run() {
  target/release/rampart-load -c "$CONNS" -d "$DURATION" --json --insecure "$@" 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["qps"]), str(round(r["latency_ms"]["p99"], 2)) + "ms")'
}
declare -A results
record() { results[$1]+="$2"$'\n'; }
for round in $(seq "$ROUNDS"); do
  for target in gateway:19640 nginx:19620; do
    name=${target%%:*} port=${target##*:}
    record "$name tls keep-alive wrk" "$(wrk_run "https://localhost:$port/")"
    record "$name tls keep-alive rampart-load" "$(load_run "https://localhost:$port/")"
    record "$name tls handshakes wrk" "$(wrk_run -H 'Connection: close' "https://localhost:$port/")"
    record "$name tls handshakes rampart-load" "$(load_run -H 'Connection: close' "https://localhost:$port/")"
  done
  record "gateway auth off" "$(wrk_run http://127.0.0.1:19650/)"
  record "gateway auth api-key" "$(wrk_run -H "X-Api-Key: $api_key" http://127.0.0.1:19660/)"
  record "gateway auth jwt-rs256" "$(wrk_run -H "Authorization: Bearer $jwt" http://127.0.0.1:19670/)"
  echo "round $round done" >&2
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-38s %12s %10s\n' target "requests/s" "p99"
for name in "gateway tls keep-alive wrk" "nginx tls keep-alive wrk" "gateway tls keep-alive rampart-load" \
  "nginx tls keep-alive rampart-load" "gateway tls handshakes wrk" "nginx tls handshakes wrk" \
  "gateway tls handshakes rampart-load" "nginx tls handshakes rampart-load" \
  "gateway auth off" "gateway auth api-key" "gateway auth jwt-rs256"; do
  rows=${results[$name]}
  rps=$(awk 'NF {print $1}' <<< "$rows" | median)
  p99=$(awk 'NF {print $2}' <<< "$rows" | sed 's/ms$//' | awk '/us$/ {sub("us",""); print $1/1000; next} {print}' | median)
  printf '%-38s %12.0f %9sms\n' "$name" "$rps" "$p99"
done
