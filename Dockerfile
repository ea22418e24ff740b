# syntax=docker/dockerfile:1
# status-exporter: multi-stage build, slim runtime, non-root user.
#   docker build --build-arg COMMIT="$(git rev-parse --short HEAD)" -t status-exporter .
#   docker run -p 8393:8393 status-exporter
# Override the configuration by mounting a file over /etc/status-exporter/config.yaml.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[uvloop]"

FROM python:3.11-slim
ARG COMMIT=unknown
ENV COMMIT=${COMMIT} \
    PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --system --no-log-init --uid 10001 --no-create-home exporter
COPY --from=build /opt/venv /opt/venv
COPY config.yaml /etc/status-exporter/config.yaml
USER 10001
EXPOSE 8393
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8393/healthz', timeout=2)"]
ENTRYPOINT ["status-exporter", "--config.file=/etc/status-exporter/config.yaml", "--web.listen-address=:8393"]
