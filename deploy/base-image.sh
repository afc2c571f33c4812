#!/usr/bin/env bash
# Builds the Debian base image the offline path uses (`rampart-base:bookworm`) when the Docker
# engine has no registry to pull from: debootstrap a minimal bookworm and import it. Does nothing
# if the image exists. Needs root, debootstrap (apt-get install debootstrap) and Debian's mirror.
set -euo pipefail
image=${BASE_IMAGE:-rampart-base:bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image exists"
  exit 0
fi
install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1; }
command -v debootstrap >/dev/null || install || { apt-get update -qq && install; }
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm into $root (about 80 s)"
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# Leave apt ready for the images built on top, and keep them small.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$root/etc/apt/apt.conf.d/90rampart"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "built $image"
