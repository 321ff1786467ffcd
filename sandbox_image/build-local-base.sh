#!/usr/bin/env bash
# Offline fallback for the sandbox base image: when `python:3.x-slim` cannot be pulled (no registry
# reachable), build an equivalent Debian bookworm root with python3 + numpy from Debian's own packages
# and `docker import` it.  Usage: build-local-base.sh IMAGE_TAG
set -euo pipefail
tag=${1:?usage: build-local-base.sh IMAGE_TAG}
if docker image inspect "$tag" >/dev/null 2>&1; then exit 0; fi
if ! command -v debootstrap >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "build-local-base: debootstrap is missing and this is not root" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # Use the mirror this machine's apt already uses (the only one that may be reachable).
  mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 | awk '{print $2}' || true)
  [ -n "$mirror" ] || mirror=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | grep -v security | head -n1 | awk '{print $2}' || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
root=$(mktemp -d /tmp/taco-harness-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-local-base: debootstrap bookworm (python3, python3-numpy) from $mirror" >&2
debootstrap --variant=minbase --include=python3,python3-numpy bookworm "$root" "$mirror" >/tmp/taco-harness-debootstrap.log 2>&1 \
  || { echo "build-local-base: debootstrap failed; see /tmp/taco-harness-debootstrap.log" >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
echo "build-local-base: imported $tag" >&2
