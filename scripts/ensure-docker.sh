#!/usr/bin/env bash
# Make a Docker daemon answer: use the one that is there, else install Debian's docker.io and start dockerd.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-docker: no Docker daemon answers and this is not root; start one (or run as root)" >&2; exit 1
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  echo "ensure-docker: installing docker.io and debootstrap from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "ensure-docker: starting dockerd in the background (log: /var/log/taco-harness-dockerd.log)" >&2
  nohup dockerd >/var/log/taco-harness-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
docker info >/dev/null 2>&1 || { echo "ensure-docker: dockerd did not come up; see /var/log/taco-harness-dockerd.log" >&2; exit 1; }
