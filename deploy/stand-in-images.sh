#!/usr/bin/env bash
# For a Docker engine with no registry: local stand-ins for the public images that
# docker-compose.yml and deploy/Dockerfile name, so `docker compose up --build` can be tried as
# written. rust:1-bookworm is the local base with gcc and this machine's Rust toolchain;
# debian:bookworm-slim is the local base; postgres:16-bookworm is deploy/Dockerfile.postgres-local
# (Debian's PostgreSQL 15 behind an entrypoint that reads the official image's variables);
# redis:7-bookworm and haproxy:2.6 are Debian's packages (the cluster profile). They
# stand in for the wiring only: on a machine with a registry, the real images are pulled instead.
# Skips any tag that already exists. Needs deploy/base-image.sh's image (built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/base-image.sh >&2
base=rampart-base:bookworm
exists() { docker image inspect "$1" >/dev/null 2>&1; }

exists debian:bookworm-slim || docker tag "$base" debian:bookworm-slim

if ! exists postgres:16-bookworm; then
  docker build -q -t postgres:16-bookworm -f deploy/Dockerfile.postgres-local deploy >/dev/null 2>&1
fi

if ! exists redis:7-bookworm; then
  docker build -q -t redis:7-bookworm -f deploy/Dockerfile.redis-local deploy >/dev/null 2>&1
fi

if ! exists haproxy:2.6; then
  docker build -q -t haproxy:2.6 -f deploy/Dockerfile.haproxy-local deploy >/dev/null 2>&1
fi

if ! exists rust:1-bookworm; then
  toolchain=$(rustc --print sysroot)
  container=rampart-rust-stand-in
  docker rm -f "$container" >/dev/null 2>&1 || true
  docker run --name "$container" "$base" sh -c \
    'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*' >&2
  docker cp "$toolchain" "$container:/usr/local/rust"
  # This machine's trust store, so cargo inside trusts what the host trusts (a TLS proxy's CA).
  docker cp -L /etc/ssl/certs/ca-certificates.crt "$container:/etc/ssl/certs/ca-certificates.crt"
  docker commit \
    --change 'ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'CMD ["bash"]' "$container" rust:1-bookworm >/dev/null
  docker rm "$container" >/dev/null
fi
echo "stand-ins ready: rust:1-bookworm, debian:bookworm-slim, postgres:16-bookworm, redis:7-bookworm, haproxy:2.6" >&2
