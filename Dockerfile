# syntax=docker/dockerfile:1
# ash-ray server image: `ash-ray serve` on port 4100, data under /data, non-root user.
#   docker build -t ghcr.io/ash-ai-org/ash-ray:0.1.0 .
# The same image runs the Helm chart (charts/ash) and KubeRay pods (deploy/kuberay).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with the dependencies, then the project ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when the
# dependency list changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt

# Then the project itself, without touching the dependencies again.
COPY README.md ./
COPY ash_ray ./ash_ray
RUN pip install --no-cache-dir --no-deps .

# ---- runtime: no compilers, no pip cache, no sources ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# bubblewrap: filesystem isolation of sandboxes; slirp4netns + iproute2: their egress
# from a network namespace of their own (docs/security.md); tini: PID 1 that forwards
# SIGTERM to `ash-ray serve` (which drains sessions) and reaps Ray's children; curl:
# probes and `helm test`. Versions follow the pinned Debian release of the base image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap slirp4netns iproute2 tini curl \
    ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# uid/gid 1000 match the chart's runAsUser and fsGroup.
RUN groupadd --gid 1000 ash \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/ash --shell /bin/bash ash \
 && mkdir -p /data \
 && chown ash:ash /data

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ASH_HOST=0.0.0.0 \
    ASH_PORT=4100 \
    ASH_DATA_DIR=/data

WORKDIR /data
USER 1000:1000

# 4100: Ash HTTP (Ray Serve). Ray between pods: 6379 GCS, 8265 dashboard, 10001 client.
EXPOSE 4100 6379 8265 10001

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["curl", "--fail", "--silent", "--show-error", "http://127.0.0.1:4100/health"]

ENTRYPOINT ["tini", "--"]
CMD ["ash-ray", "serve"]
