# Host image: the harness itself (`harness generate / evaluate / run`).  It drives the sandbox pool on
# the host's Docker daemon through the mounted socket (-v /var/run/docker.sock:/var/run/docker.sock);
# the sandboxes are sibling containers that use only tmpfs, so paths in here do not matter to them.
#
# Build: scripts/build-host-image.sh [TAG] (`make host-image`), or `docker build -t taco-harness .`
# where the base image can be pulled.  The default base carries CUDA torch, which is kept (the `gpu`
# extra is an unpinned torch>=2.1).  Offline, the script builds on the local Debian bookworm base of
# the sandbox image (python3 + numpy, no pip, externally managed) and sends a ./wheelhouse with every
# wheel (CPU torch==2.13.0 included) in the build context; pip then installs from it alone.
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime

# Dependencies, in a virtualenv that sees the base's site-packages (its torch, numpy).  They depend on
# pyproject.toml only, so a change to the code does not reinstall them; the wheelhouse stays in this
# stage and never reaches the final image.
FROM ${BASE_IMAGE} AS deps
# "wheelhous[e]": a glob, so that a context without a wheelhouse builds too (pyproject.toml always matches).
COPY pyproject.toml wheelhous[e] /tmp/wheelhouse/
RUN set -eu; \
    if ls /tmp/wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wheelhouse; fi; \
    if ! python3 -m venv --system-site-packages /opt/harness >/dev/null 2>&1; then \
        # Debian's python3 has no ensurepip: make the venv without pip and run pip from its wheel.
        rm -rf /opt/harness; \
        python3 -m venv --system-site-packages --without-pip /opt/harness; \
        pipwheel=$(ls /tmp/wheelhouse/pip-*.whl 2>/dev/null | head -n1); \
        [ -n "$pipwheel" ] || { echo "no pip in this base and no wheelhouse/pip-*.whl" >&2; exit 1; }; \
        /opt/harness/bin/python "$pipwheel/pip" install -q --no-cache-dir --disable-pip-version-check pip; \
    fi; \
    # The project with empty packages: resolves and installs exactly its dependencies (+ the gpu extra).
    mkdir -p /tmp/stub/harness /tmp/stub/sandbox_image; \
    cp /tmp/wheelhouse/pyproject.toml /tmp/stub/; touch /tmp/stub/README.md; \
    /opt/harness/bin/python -m pip install -q --no-cache-dir --disable-pip-version-check "/tmp/stub[gpu]" "setuptools>=64"; \
    /opt/harness/bin/python -m pip uninstall -q -y taco-harness; \
    /opt/harness/bin/python -c "import torch, transformers, datasets, docker; print('torch', torch.__version__)"; \
    rm -rf /tmp/stub /root/.cache

FROM ${BASE_IMAGE}
COPY --from=deps /opt/harness /opt/harness
# HF_HOME and the verdict cache live under /work, the directory meant to be mounted.
ENV PATH=/opt/harness/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/work/.cache/huggingface \
    TACO_HARNESS_CACHE_DIR=/work/.cache/taco-harness
COPY pyproject.toml README.md /opt/taco-harness/
COPY harness /opt/taco-harness/harness
COPY sandbox_image /opt/taco-harness/sandbox_image
RUN python -m pip install -q --no-deps --no-index --no-build-isolation /opt/taco-harness \
    && rm -rf /opt/taco-harness/build /opt/taco-harness/*.egg-info \
    && harness --help >/dev/null
WORKDIR /work
ENTRYPOINT ["harness"]
CMD ["--help"]
