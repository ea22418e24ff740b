#!/usr/bin/env bash
# A stand-in for a Python base image, made from Debian's own packages, for machines that
# reach Debian's archive and the package index but no container registry (this project's
# CI). It is Debian's Python of that release, not the official python image:
#   bookworm -> Python 3.11, trixie -> Python 3.13.
#
#   deploy/docker/stand-in-base.sh SUITE TAG
#   deploy/docker/stand-in-base.sh bookworm python:3.11-slim
#
# Needs root, debootstrap and a running Docker engine. Does nothing when TAG exists.
# The machine's CA bundle is copied in, so that pip in a build trusts what this machine
# trusts. DEBIAN_MIRROR overrides debootstrap's default mirror.
set -euo pipefail
suite=${1:?usage: stand-in-base.sh SUITE TAG}
tag=${2:?usage: stand-in-base.sh SUITE TAG}

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "stand-in-base: $tag exists"
  exit 0
fi
work=$(mktemp -d)
rootfs_tag="status-exporter-stand-in/${suite}-rootfs:latest"
cleanup() {
  rm -rf "$work"
  docker rmi "$rootfs_tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$work/rootfs" ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -c . | docker import - "$rootfs_tag" >/dev/null
mkdir "$work/context"
cp /etc/ssl/certs/ca-certificates.crt "$work/context/ca-certificates.crt"
cat >"$work/context/Dockerfile" <<DOCKERFILE
FROM $rootfs_tag
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt LANG=C.UTF-8
RUN ln -sf /usr/bin/python3 /usr/local/bin/python
DOCKERFILE
DOCKER_BUILDKIT=0 docker build --quiet --network host -t "$tag" "$work/context" >/dev/null
echo "stand-in-base: built $tag from Debian $suite"
