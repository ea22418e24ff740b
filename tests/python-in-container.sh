#!/usr/bin/env bash
# Run the whole pytest suite on another Python, in a container made from Debian's own
# packages (deploy/docker/stand-in-base.sh), with the real components the main run has
# where they install there (prometheus and promtool, node_exporter, chromium, git,
# openssl). Docker, debootstrap, kubectl, systemd, Alertmanager and VictoriaMetrics are not
# inside: their tests (about tools, not the Python) run in the main run and skip here.
#
#   tests/python-in-container.sh trixie     # Debian 13: Python 3.13
#
# Skips when no Docker engine answers, unless STATUS_EXPORTER_REQUIRE_TOOLS=1 (CI), which
# makes that a failure. Prints the inner run's summary; exits with its status.
set -euo pipefail
suite=${1:?usage: python-in-container.sh SUITE}
cd "$(dirname "$0")/.."

unavailable() {
  if [ "${STATUS_EXPORTER_REQUIRE_TOOLS:-}" = 1 ]; then
    echo "python-in-container: $1 (required: STATUS_EXPORTER_REQUIRE_TOOLS=1)" >&2
    exit 1
  fi
  echo "python-in-container: SKIPPED: $1"
  exit 0
}
command -v docker >/dev/null || unavailable "docker is not installed"
docker info >/dev/null 2>&1 || unavailable "no Docker engine answers"

base="status-exporter-stand-in/python:$suite"
if ! docker image inspect "$base" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || unavailable "debootstrap is not installed"
  deploy/docker/stand-in-base.sh "$suite" "$base"
fi

packages="git make openssl prometheus prometheus-node-exporter chromium fonts-dejavu-core"
image="status-exporter-test/suite-$suite:$(echo "$packages" | sha256sum | cut -c1-12)"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  DOCKER_BUILDKIT=0 docker build --quiet --network host -t "$image" - >/dev/null <<DOCKERFILE
FROM $base
# Check-Valid-Until off: testing's Release file is valid for a week only, and a mirror
# that lags (or a snapshot) would otherwise refuse it as expired.
RUN apt-get -o Acquire::Check-Valid-Until=false update -q \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages \\
    && rm -rf /var/lib/apt/lists/*
DOCKERFILE
fi

# The working tree as git sees it (tracked and new files, not ignored ones), copied in:
# the container's venv and caches never touch the checkout.
git ls-files -z --cached --others --exclude-standard --deduplicate \
  | tar --null --files-from=- --ignore-failed-read -c 2>/dev/null \
  | docker run --rm -i --network host \
      -e STATUS_EXPORTER_REQUIRE_TOOLS=1 \
      -e STATUS_EXPORTER_NOT_HERE=docker,debootstrap,kubectl,systemd-analyze,systemd-sysusers,systemd-nspawn,prometheus-alertmanager,amtool,victoria-metrics,vmagent,vmalert \
      "$image" sh -ec '
        mkdir /src && tar -x -C /src && cd /src
        python3 -m venv /venv
        /venv/bin/pip install --quiet --disable-pip-version-check -e ".[test]"
        touch /venv/.installed  # the Makefile'"'"'s stamp: make uses this venv as it is
        export VENV=/venv
        echo "python-in-container: $(/venv/bin/python --version) on Debian $(cat /etc/debian_version)"
        /venv/bin/pytest -p no:cacheprovider -q -ra
      '
