"""Which systemd unit, container and Kubernetes pod a process belongs to, from its cgroup.

:func:`identity_of` reads the lines of ``/proc/<pid>/cgroup``
(``hierarchy-id:controllers:path``; cgroup v2 has the one line ``0::/path``, v1 one
line per hierarchy) and recognises the names that systemd and the container
runtimes give cgroups:

* systemd units: the deepest ``.service`` / ``.scope`` / ``.socket`` / ``.mount`` /
  ``.swap`` component (``/system.slice/nginx.service``,
  ``/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service``,
  ``session-3.scope``); a ``user-<uid>.slice`` above it gives ``user``;
* Docker: ``/docker/<id>`` (cgroupfs driver), ``docker-<id>.scope`` (systemd driver,
  rootful or rootless);
* containerd (CRI): ``cri-containerd-<id>.scope``; cgroupfs containers of containerd's
  ``k8s.io`` namespace, ``/k8s.io/<id>``;
* CRI-O: ``crio-<id>.scope`` (systemd) or ``crio-<id>`` (cgroupfs); ``crio-conmon-<id>``
  is CRI-O's monitor process, a unit, not a container;
* Podman: ``libpod-<id>.scope`` (possibly with a ``/container`` child, crun's),
  ``libpod-<id>`` under ``libpod_parent`` (cgroupfs); ``libpod-conmon-<id>.scope`` is
  the monitor, not a container;
* Kubernetes pods: ``kubepods[-besteffort|-burstable]-pod<uid with _>.slice`` (the
  kubelet's systemd driver), ``/kubepods[/besteffort|/burstable]/pod<uid>/<id>``
  (cgroupfs driver; the runtime is not in the name), and the
  ``<pod slice>:<prefix>:<id>`` form a runtime on cgroupfs writes when the kubelet
  was configured for systemd.

Container ids are 64 lowercase hex digits; pod uids are UUIDs or, for static pods,
32 hex digits (a config hash).

Which line: a container found on any line wins (the ``name=systemd`` line first,
then the unified ``0::`` line, then ``cpu``, then the others in file order), since a
process is sometimes left in a host unit on one v1 hierarchy and in its container on
the others; without a container, the first line in that order that names anything.
Nested containers (Kubernetes in Docker: ``/docker/<node>/kubepods.slice/...``) give
the innermost container, the one whose pod the path names too. A unit above the
container (``/system.slice/containerd.service/...``) is the runtime's, not the
process's: only a unit inside the container (its own systemd) counts. Paths seen
from another cgroup namespace start with ``/..``: those components are skipped.

:func:`kubelet_container_logs` maps container ids to pods from the names the kubelet
gives the links in ``/var/log/containers``: ``<pod>_<namespace>_<container>-<id>.log``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "KUBELET_LOGS_LIMIT",
    "RUNTIME_CONTAINERD",
    "RUNTIME_CRIO",
    "RUNTIME_DOCKER",
    "RUNTIME_PODMAN",
    "CgroupIdentity",
    "PodInfo",
    "identity_of",
    "identity_of_path",
    "kubelet_container_logs",
]

RUNTIME_DOCKER: Final = "docker"
RUNTIME_CONTAINERD: Final = "containerd"
RUNTIME_CRIO: Final = "cri-o"
RUNTIME_PODMAN: Final = "podman"

KUBELET_LOGS_LIMIT: Final = 10_000  # directory entries looked at, at most

_PREFIX_RUNTIME: Final = {
    "docker": RUNTIME_DOCKER,
    "cri-containerd": RUNTIME_CONTAINERD,
    "crio": RUNTIME_CRIO,
    "libpod": RUNTIME_PODMAN,
}
_PREFIXES: Final = "|".join(_PREFIX_RUNTIME)
_ID: Final = r"[0-9a-f]{64}"
_ID_RE: Final = re.compile(_ID)
# docker-<id>.scope, crio-<id>, libpod-<id>.scope...: crio-conmon-<id> does not match.
_SCOPE_RE: Final = re.compile(rf"(?P<prefix>{_PREFIXES})-(?P<id>{_ID})(?:\.scope)?")
# kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>, one component.
_COLON_RE: Final = re.compile(rf"(?P<slice>[^:]*):(?P<prefix>{_PREFIXES}):(?P<id>{_ID})")
_UID: Final = r"[0-9a-f]{8}(?:[-_][0-9a-f]{4}){3}[-_][0-9a-f]{12}|[0-9a-f]{32}"
_POD_SLICE_RE: Final = re.compile(rf"kubepods(?:-besteffort|-burstable)?-pod(?P<uid>{_UID})\.slice")
_POD_DIR_RE: Final = re.compile(rf"pod(?P<uid>{_UID})")
_USER_SLICE_RE: Final = re.compile(r"user-(?P<uid>[0-9]+)\.slice")
_UNIT_SUFFIXES: Final = (".service", ".scope", ".socket", ".mount", ".swap")
# The parent of a bare <id> component, and the runtime it says.
_ID_PARENTS: Final = {"docker": RUNTIME_DOCKER, "k8s.io": RUNTIME_CONTAINERD}


@dataclass(frozen=True, slots=True)
class CgroupIdentity:
    """What a cgroup path says of a process; None where it says nothing.

    ``unit``: the systemd unit (``nginx.service``, ``session-3.scope``); for a
    user's unit ``user`` is the uid of its ``user-<uid>.slice``. ``container_id``:
    64 hex digits; ``runtime``: ``docker``, ``containerd``, ``cri-o``, ``podman``, or
    None where the name does not say (Kubernetes' cgroupfs driver). ``pod_uid``: the
    Kubernetes pod's uid, with dashes.
    """

    unit: str | None = None
    container_id: str | None = None
    runtime: str | None = None
    pod_uid: str | None = None
    user: int | None = None


@dataclass(frozen=True, slots=True)
class PodInfo:
    """The Kubernetes pod of a container, as the kubelet names its log link."""

    namespace: str
    pod: str
    container: str


_NOTHING: Final = CgroupIdentity()


def identity_of(cgroup_lines: Sequence[str]) -> CgroupIdentity:
    """The unit, container and pod named by the lines of a ``/proc/<pid>/cgroup`` file."""
    identities = [identity_of_path(path) for path in _paths(cgroup_lines)]
    for identity in identities:
        if identity.container_id is not None:
            return identity
    for identity in identities:
        if identity != _NOTHING:
            return identity
    return _NOTHING


def identity_of_path(path: str) -> CgroupIdentity:
    """The unit, container and pod named by one cgroup path (``/system.slice/x.service``)."""
    components = [c for c in path.split("/") if c not in ("", ".", "..")]
    container: tuple[int, str, str | None] | None = None  # (index, id, runtime)
    pod_uid: str | None = None
    user: int | None = None
    for index, component in enumerate(components):
        if match := _SCOPE_RE.fullmatch(component):
            container = (index, match["id"], _PREFIX_RUNTIME[match["prefix"]])
        elif match := _COLON_RE.fullmatch(component):
            container = (index, match["id"], _PREFIX_RUNTIME[match["prefix"]])
            if pod := _POD_SLICE_RE.fullmatch(match["slice"]):
                pod_uid = pod["uid"]
        elif _ID_RE.fullmatch(component) and index > 0:
            parent = components[index - 1]
            if parent in _ID_PARENTS:
                container = (index, component, _ID_PARENTS[parent])
            elif _POD_DIR_RE.fullmatch(parent) and "kubepods" in components[:index]:
                container = (index, component, None)
        elif uid := _pod_uid(components, index):
            pod_uid = uid
        elif match := _USER_SLICE_RE.fullmatch(component):
            user = int(match["uid"])
    first_unit = 0 if container is None else container[0] + 1
    unit = next(
        (c for c in reversed(components[first_unit:]) if c.endswith(_UNIT_SUFFIXES)),
        None,
    )
    return CgroupIdentity(
        unit=unit,
        container_id=None if container is None else container[1],
        runtime=None if container is None else container[2],
        pod_uid=None if pod_uid is None else pod_uid.replace("_", "-"),
        user=user,
    )


def _pod_uid(components: list[str], index: int) -> str | None:
    """The pod uid that ``components[index]`` names: a pod slice, or ``pod<uid>`` below kubepods."""
    component = components[index]
    if match := _POD_SLICE_RE.fullmatch(component):
        return match["uid"]
    if (match := _POD_DIR_RE.fullmatch(component)) and "kubepods" in components[:index]:
        return match["uid"]
    return None


def _paths(lines: Sequence[str]) -> list[str]:
    """The paths of ``lines``: ``name=systemd``, then unified (``0::``), ``cpu``, the rest."""
    ranked: list[tuple[int, str]] = []
    for line in lines:
        hierarchy, _, rest = line.strip().partition(":")
        controllers, found, path = rest.partition(":")  # a path may hold more colons
        if not found:
            continue
        names = controllers.split(",")
        if "name=systemd" in names:
            rank = 0
        elif hierarchy == "0" and not controllers:
            rank = 1
        elif "cpu" in names:
            rank = 2
        else:
            rank = 3
        ranked.append((rank, path))
    ranked.sort(key=lambda item: item[0])  # stable: file order within a rank
    return [path for _, path in ranked]


def kubelet_container_logs(
    directory: str = "/var/log/containers", *, limit: int = KUBELET_LOGS_LIMIT
) -> dict[str, PodInfo]:
    """Container id -> pod, from the names of the kubelet's links in ``directory``.

    The names are ``<pod>_<namespace>_<container>-<container id>.log`` (pod names,
    namespaces and container names hold no ``_``). Only names are read: a listing,
    no link is followed, at most ``limit`` entries looked at. A name the kubelet cut
    to 255 characters (a long pod name) has lost part of its id and is skipped, as is
    any other name. A directory that does not exist (not a Kubernetes node) gives an
    empty mapping; any other error is the OSError of the listing.
    """
    found: dict[str, PodInfo] = {}
    try:
        entries = os.scandir(directory)
    except FileNotFoundError:
        return found
    with entries:
        for count, entry in enumerate(entries):
            if count >= limit:
                break
            parsed = _log_link(entry.name)
            if parsed is not None:
                found[parsed[0]] = parsed[1]
    return found


def _log_link(name: str) -> tuple[str, PodInfo] | None:
    if not name.endswith(".log"):
        return None
    head, dash, container_id = name[: -len(".log")].rpartition("-")
    if not dash or not _ID_RE.fullmatch(container_id):
        return None
    parts = head.split("_")
    if len(parts) != 3 or not all(parts):
        return None
    pod, namespace, container = parts
    return container_id, PodInfo(namespace=namespace, pod=pod, container=container)
