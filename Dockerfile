# syntax=docker/dockerfile:1
# One image for the whole fleet. The ENTRYPOINT is the `finex` CLI; the default command runs
# the workers, and the chart and the operator pick the program:
#   workers:  finex workers start --worker matrix          (the operator's Deployments)
#   exporter: finex exporter --port 9121                   (args: exporter ...)
#   operator: kopf run --module=finex_operator.handlers ... (command: kopf)
# Everything is exec form, so the program is PID 1 and gets the kubelet's SIGTERM directly:
# the worker supervisor's warm shutdown lets running jobs finish and commit.
#
#   docker build -t finex-workers:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the project and its dependencies into a virtualenv ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/finex
WORKDIR /src
# Dependencies first, so a source change does not reinstall them.
COPY pyproject.toml README.md ./
COPY workers/ workers/
COPY operator/ operator/
RUN /opt/finex/bin/pip install . \
    && /opt/finex/bin/python -m compileall -q /opt/finex/lib

# --- runtime: the virtualenv and a non-root user, nothing else ------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 finex \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin finex
COPY --from=build /opt/finex /opt/finex
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
