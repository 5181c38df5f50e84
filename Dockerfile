# syntax=docker/dockerfile:1.7
#
# docent's Ray application image: the Serve application (gateway, embedder, retriever,
# reranker, router, generator) and the ingest job, one image for both; also usable as
# a Ray worker or a KubeRay head, since Ray, docent and its models are all installed.
#
#   docker build -t docent:0.1.0-cpu .                            # CPU (default)
#   docker build -t docent:0.1.0-gpu --build-arg VARIANT=gpu .    # CUDA
#
#   docker run -p 8000:8000 docent:0.1.0-cpu                      # serve (embedded PostgreSQL)
#   docker run -v "$PWD/docs:/docs:ro" docent:0.1.0-cpu docent ingest /docs
#
# VARIANT picks the PyTorch build, nothing else: `cpu` installs torch from the PyTorch
# CPU index (no CUDA libraries, a ~4x smaller image); `gpu` installs the default PyPI
# wheel, which bundles its CUDA runtime as nvidia-* wheels, so the base image stays the
# same and only the host's NVIDIA driver (and the NVIDIA container toolkit) is needed.
# See docs/deploy.md#images.

# Pinned to an exact Python release and Debian suite; bump deliberately.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
ARG VARIANT=cpu


# ── builder: a virtualenv with torch, then docent's dependencies, then docent ──────────
FROM ${BASE_IMAGE} AS builder
ARG VARIANT
# The version `make install` uses; keep the two in step (tests/unit/test_dockerfile.py checks).
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# Compilers only for dependencies without a wheel for this platform; they stay in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv && pip install --upgrade pip

# torch first, the variant's build: the project's `torch>=…` range is then already met.
RUN --mount=type=cache,target=/root/.cache/pip \
    case "${VARIANT}" in \
      cpu) pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_CPU_INDEX}" ;; \
      gpu) pip install "torch==${TORCH_VERSION}" ;; \
      *) echo "VARIANT must be cpu or gpu, not '${VARIANT}'" >&2; exit 1 ;; \
    esac
RUN python -c "import sys, torch; cuda = torch.version.cuda; print('torch', torch.__version__, 'CUDA', cuda); \
sys.exit(0 if (cuda is None) == ('${VARIANT}' == 'cpu') else 'torch build does not match VARIANT=${VARIANT}')"

# Dependencies in their own layer: rebuilt only when pyproject.toml changes, not on every code edit.
WORKDIR /src
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

COPY README.md ./
COPY docent ./docent
COPY ingest ./ingest
COPY services ./services
COPY training ./training
COPY evaluation ./evaluation
COPY clients ./clients
COPY cli ./cli
RUN pip install --no-deps . \
 && python -c "import torch, cli.main, services.gateway.deployment, ingest.pipeline, training.embeddings; print('docent imports')"


# ── runtime: the virtualenv, the configs, a non-root user ──────────────────────────────
FROM ${BASE_IMAGE} AS runtime
ARG VARIANT

LABEL org.opencontainers.image.title="docent" \
      org.opencontainers.image.description="docent: Ray Serve query service and ingest job (VARIANT=${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"

# tini as PID 1: forwards SIGTERM to docent and reaps the processes Ray leaves behind.
# wget: KubeRay's exec probes on Ray pods call it (bash is in the base image already).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini wget \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 1000 docent \
 && useradd --uid 1000 --gid docent --create-home --home-dir /home/docent --shell /usr/sbin/nologin docent \
 && mkdir -p /data \
 && chown docent:docent /data

COPY --from=builder /opt/venv /opt/venv

# The code lives in the virtualenv; /app holds what docent reads by relative path
# (services/gateway/serve.yaml, settings files, experiment spaces) and the container scripts.
WORKDIR /app
COPY config ./config
COPY experiments ./experiments
COPY --chmod=0755 docker/ray-head.sh docker/ingest.sh ./docker/

# DOCENT_DATA_DIR: ONNX exports, trained reranker/router, S3 mirrors, the embedded
# PostgreSQL when no DATABASE_URL is given; mount a volume there.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DOCENT_DATA_DIR=/data \
    HF_HOME=/data/huggingface \
    RAY_USAGE_STATS_ENABLED=0 \
    DOCENT_IMAGE_VARIANT=${VARIANT}

USER docent

# 8000: the gateway (Serve's HTTP proxy); 8265: Ray dashboard; 6379: Ray GCS; 10001: Ray client.
EXPOSE 8000 8265 6379 10001

# The gateway's liveness endpoint; models load and the ONNX export is made on first start.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["tini", "--"]
# The Serve application of services/gateway/serve.yaml. `docent serve` deploys that file as
# `serve run services/gateway/serve.yaml` does, and also lets the listen address be overridden:
# the file says 127.0.0.1, which inside a container is unreachable through a published
# port. The ingest job: `docent ingest PATH` (docker compose run ingest).
CMD ["docent", "serve", "--host", "0.0.0.0"]
