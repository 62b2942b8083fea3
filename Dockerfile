# syntax=docker/dockerfile:1
# One image for the whole fleet. The ENTRYPOINT is the `finex` CLI; the default command runs
# the workers, and the chart and the operator pick the program:
#   workers:  finex workers start --worker matrix          (the operator's Deployments)
#   exporter: finex exporter --port 9121                   (args: exporter ...)
#   operator: kopf run --module=finex_operator.handlers ... (command: kopf)
# Everything is exec form, so the program is PID 1 and gets the kubelet's SIGTERM directly:
# the worker supervisor's warm shutdown lets running jobs finish and commit.
#
#   docker build -t finex-workers:0.2.0 .
#
# Reproducible as far as a Dockerfile can be: the base image by digest, and the Python packages
# of requirements.lock only, each file checked against its hash (make lock writes the lock; make
# lint fails when it is stale). Debian's python3 comes from bookworm's archive of the day;
# /usr/share/finex/bom.txt records every Python and Debian package that went in, with versions.
# hack/build-image.sh builds the same image without Docker (mmdebstrap), which the tests run.

# debian:bookworm-slim, the multi-arch index, by digest: bookworm's python3 is 3.11, the Python
# of hack/build-image.sh's image and of the tests. The digest is the one Renovate recorded for
# debian:bookworm-slim (debian:12-slim) on 2025-11-19; no registry is reachable where this file
# was written, so refresh it with `docker buildx imagetools inspect debian:bookworm-slim`.
ARG BASE_IMAGE=debian:bookworm-slim@sha256:b4aa902587c2e61ce789849cb54c332b0400fe27b1ee33af4669e1f7e7c3e22f

# --- build: install the project and its dependencies into a virtualenv ---------------------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Debian's versions of the day (the BOM records them): hence no version pins here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/finex
WORKDIR /src
# The locked dependencies first, so a source change does not reinstall them.
COPY requirements.lock ./
RUN /opt/finex/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY workers/ workers/
COPY operator/ operator/
# The project itself: no dependency left to resolve, and its build backend is in the lock.
RUN /opt/finex/bin/pip install --no-deps --no-build-isolation . \
    && /opt/finex/bin/python -m compileall -q /opt/finex/lib

# --- runtime: python3, the virtualenv and a non-root user, nothing else ---------------------
FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 finex \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin finex
COPY --from=build /opt/finex /opt/finex
# The bill of materials, in the format hack/build-image.sh writes.
RUN mkdir -p /usr/share/finex \
    && { echo "# finex-workers: bill of materials (Dockerfile)"; \
         /opt/finex/bin/python -m pip list --format=freeze --disable-pip-version-check \
           | LC_ALL=C sort | sed 's/^/python /'; \
         dpkg-query -W -f='debian ${Package}=${Version}\n' | LC_ALL=C sort; } \
       > /usr/share/finex/bom.txt
LABEL org.opencontainers.image.version="0.2.0" \
      io.finex.bom.path="/usr/share/finex/bom.txt"
ENV PATH=/opt/finex/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The root filesystem is read-only in the cluster; /tmp is an emptyDir there.
WORKDIR /tmp
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 9121
ENTRYPOINT ["finex"]
CMD ["workers", "start"]
