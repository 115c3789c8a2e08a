# syntax=docker/dockerfile:1
# One image for every Watchkeeper component; the command picks which one runs:
#   serve (default) | monitor | retrain worker | retrain | train --if-missing | db upgrade
# Build:  docker build -t watchkeeper:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: wheels and a virtual environment, with compilers available ------------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/watchkeeper
WORKDIR /src
# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN /opt/watchkeeper/bin/pip install --upgrade pip \
    && /opt/watchkeeper/bin/python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
    && /opt/watchkeeper/bin/pip install -r /tmp/requirements.txt
COPY watchkeeper ./watchkeeper
COPY watchkeeper_cli ./watchkeeper_cli
COPY serving ./serving
COPY monitoring ./monitoring
COPY retrain ./retrain
RUN /opt/watchkeeper/bin/pip install --no-deps . \
    && /opt/watchkeeper/bin/python -m compileall -q /opt/watchkeeper

# -- runtime: the virtual environment only; no compilers, no pip cache ---------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="watchkeeper" \
      org.opencontainers.image.description="Serve, monitor and retrain tabular scikit-learn models" \
      org.opencontainers.image.licenses="Apache-2.0"
# Nothing to apt-get: the wheels carry their native libraries (OpenMP included).
RUN groupadd --system --gid 10001 watchkeeper \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/watchkeeper \
       --shell /usr/sbin/nologin watchkeeper \
    && mkdir -p /var/lib/watchkeeper/registry /var/lib/watchkeeper/spill \
       /var/lib/watchkeeper/alertmanager \
       /var/lib/watchkeeper/detectors \
    && chown -R 10001:10001 /var/lib/watchkeeper
COPY --from=build /opt/watchkeeper /opt/watchkeeper
# Containers listen on all interfaces; state lives under /var/lib/watchkeeper, whose
# registry, spill and detectors folders are volumes in docker-compose.yml and helm/.
# One numeric thread per process (WATCHKEEPER_NUMERIC_THREADS; every `watchkeeper`
# command sets OMP_NUM_THREADS and the like from it, the copies here are for any other
# Python run in the image): a pool sized to the host's cores in each process would
# oversubscribe them.
ENV PATH=/opt/watchkeeper/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/watchkeeper \
    WATCHKEEPER_DATA_DIR=/var/lib/watchkeeper \
    WATCHKEEPER_HOST=0.0.0.0 \
    WATCHKEEPER_MONITOR_HOST=0.0.0.0 \
    WATCHKEEPER_RETRAIN_HOST=0.0.0.0 \
    WATCHKEEPER_NUMERIC_THREADS=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1
USER 10001:10001
WORKDIR /var/lib/watchkeeper
EXPOSE 8000 8001 8002
# Checks serving's /readyz; monitor and worker containers override it with
# `watchkeeper healthcheck monitor|worker` (docker-compose.yml does).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["watchkeeper", "healthcheck"]
ENTRYPOINT ["watchkeeper"]
CMD ["serve"]
