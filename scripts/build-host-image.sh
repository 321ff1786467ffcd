#!/usr/bin/env bash
# Build the host image (top-level Dockerfile: the harness itself, run with the Docker socket mounted).
# Usage: scripts/build-host-image.sh [TAG]        (TAG defaults to taco-harness:latest)
#
# Cached by content: the image is tagged taco-harness:<hash of Dockerfile, pyproject.toml, README.md,
# harness/, sandbox_image/, the base image's id and the torch spec>, and a second run with the same
# inputs builds nothing.  TAG is an alias of that tag.  Prints the content tag on stdout; messages,
# including the base that was used, go to stderr.
#
# Base: $BASE_IMAGE, else the Dockerfile's default (CUDA torch), when it is present or can be pulled.
# Otherwise (no registry) the local Debian bookworm base of the sandbox image, taco-harness-base:bookworm
# (sandbox_image/build-local-base.sh makes it when missing), with $TORCH_SPEC (default torch==2.13.0,
# the CPU wheel): this machine's pip (its configured index, mirror or find-links) downloads every wheel
# into a wheelhouse that is sent in the build context, and the build installs from it alone.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
alias_tag=${1:-taco-harness:latest}
local_base=taco-harness-base:bookworm
torch_spec=${TORCH_SPEC:-torch==2.13.0}
base=${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' "$repo/Dockerfile" | head -n1)}
say() { echo "build-host-image: $*" >&2; }
started=$(date +%s)

if docker image inspect "$base" >/dev/null 2>&1 || docker pull "$base" >&2; then
  offline=0
else
  say "cannot pull $base; using the local Debian base $local_base with $torch_spec (CPU) instead"
  offline=1
  base=$local_base
  docker image inspect "$base" >/dev/null 2>&1 || bash "$repo/sandbox_image/build-local-base.sh" "$base"
fi

# The build inputs: exactly what .dockerignore lets into a `docker build .` context.
inputs() {
  (cd "$repo" && find Dockerfile pyproject.toml README.md harness sandbox_image -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort)
}
base_id=$(docker image inspect -f '{{.Id}}' "$base")
hash=$({ echo "base=$base id=$base_id offline=$offline torch=$torch_spec"
         cd "$repo" && inputs | tr '\n' '\0' | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
tag=taco-harness:$hash

if docker image inspect "$tag" >/dev/null 2>&1; then
  say "$tag is up to date (base $base)"
else
  ctx=$(mktemp -d /tmp/taco-harness-host-context.XXXXXX)
  trap 'rm -rf "$ctx"' EXIT
  (cd "$repo" && inputs | tar -cf - -T -) | tar -C "$ctx" -xf -
  if [ "$offline" = 1 ]; then
    py=$repo/.venv/bin/python
    [ -x "$py" ] || py=python3
    # Wheels for the base's Python; when it is not this machine's, binary wheels for its version.
    want=$(docker run --rm --entrypoint python3 "$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    have=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    extra=()
    [ "$want" = "$have" ] || extra=(--python-version "$want" --only-binary=:all:)
    say "downloading wheels for Python $want into the build context (pip: $py)"
    "$py" -m pip download -q --disable-pip-version-check --dest "$ctx/wheelhouse" "${extra[@]}" \
        "$ctx[gpu]" "$torch_spec" pip "setuptools>=64" \
        2> >(grep -v -E "is ignored: it is neither a file nor a directory|^WARNING: (Location|Running pip)" >&2)
    say "wheelhouse: $(ls "$ctx/wheelhouse" | wc -l) files, $(du -sh "$ctx/wheelhouse" | cut -f1)"
  fi
  say "building $tag on $base"
  docker build --force-rm --build-arg BASE_IMAGE="$base" --label "taco-harness.base=$base" \
      --label "taco-harness.inputs=$hash" -t "$tag" "$ctx" >&2
fi
docker tag "$tag" "$alias_tag"
say "base used: $base ($([ "$offline" = 1 ] && echo "offline fallback, $torch_spec CPU" || echo "its own torch"))"
say "done in $(( $(date +%s) - started ))s: $tag (alias $alias_tag)"
echo "$tag"
