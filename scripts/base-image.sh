#!/usr/bin/env bash
# Build an offline base image for the runtime images when no registry is reachable: a minimal Debian
# bookworm (Python 3.11, like python:3.11-slim) made with debootstrap from the Debian mirror and imported
# into Docker. Idempotent: does nothing when the image exists. Needs root, debootstrap and a daemon.
#   scripts/base-image.sh [IMAGE]        (default servebench-base:bookworm)
set -euo pipefail
image=${1:-servebench-base:bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image: present"
  exit 0
fi
root=${SERVEBENCH_ROOTFS:-/var/cache/servebench/rootfs-bookworm}
if [ ! -x "$root/usr/bin/python3" ]; then
  rm -rf "$root"
  mkdir -p "$(dirname "$root")"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$root" http://deb.debian.org/debian >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
fi
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "base image $image: built from $root"
