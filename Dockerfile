# syntax=docker/dockerfile:1
# status-exporter: multi-stage build, slim runtime, non-root user.
#   docker build --build-arg COMMIT="$(git rev-parse --short HEAD)" -t status-exporter .
#   docker run -p 8393:8393 status-exporter
# Override the configuration by mounting a file over /etc/status-exporter/config.yaml.
# Behind a registry mirror: --build-arg PYTHON_IMAGE=mirror.example/python:3.11-slim

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# pip and setuptools are build tools: the runtime venv keeps only what the daemon runs,
# so that the image reports its own modules, not the build's.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[uvloop]" \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools

FROM ${PYTHON_IMAGE}
ARG COMMIT=unknown
ENV COMMIT=${COMMIT} \
    PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:8393/healthz
RUN useradd --system --no-log-init --uid 10001 --no-create-home exporter
COPY --from=build /opt/venv /opt/venv
COPY config.yaml /etc/status-exporter/config.yaml
USER 10001
EXPOSE 8393
# HEALTHCHECK_URL follows a changed --web.listen-address (docker run -e HEALTHCHECK_URL=...).
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=2)"]
ENTRYPOINT ["status-exporter", "--config.file=/etc/status-exporter/config.yaml", "--web.listen-address=:8393"]
