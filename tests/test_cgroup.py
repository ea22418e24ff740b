"""identity_of over real /proc/<pid>/cgroup files of every layout, and the kubelet's log names.

Each fixture says where it was published. Most are whole files (or their first
complete lines) that people pasted into GitHub issues; a few layouts were only
published as a cgroup *path* (``systemctl status``'s ``CGroup:``, ``systemd-cgls``,
cAdvisor's ``id``, a runtime's log): those are framed here as the line that path
gives (``0::<path>`` where the host was cgroup v2, the hierarchy named where it was
v1), and the test says so. Two layouts that are only documented, not pasted, are
marked "documented". Docker is installed on the test machine but its daemon does
not run, so no container's file was taken here; this machine's own file is the
first fixture.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.sources.discovery.cgroup import (
    RUNTIME_CONTAINERD,
    RUNTIME_CRIO,
    RUNTIME_DOCKER,
    RUNTIME_PODMAN,
    CgroupIdentity,
    PodInfo,
    identity_of,
    identity_of_path,
    kubelet_container_logs,
)
from exporter.sources.discovery.procfs import ProcFS


def lines(text: str) -> list[str]:
    """The lines of a pasted file, its indentation removed."""
    return [line.strip() for line in text.strip().splitlines()]


# This machine (the test sandbox, Linux 6.18): a v1 hybrid whose only non-root path
# is its own memory cgroup; no systemd, no container runtime names anything.
THIS_MACHINE = lines("""
    9:name=systemd:/
    8:pids:/
    7:blkio:/
    6:freezer:/
    5:devices:/
    4:memory:/process_api/cdede71639303ddcc73a8aa29699a85a
    3:cpuset:/
    2:cpuacct:/
    1:cpu:/
    0::/
""")

# liske/needrestart#165: dockerd's /proc/1619/cgroup on CentOS 7.6 (v1).
DOCKERD_SERVICE_V1 = lines("""
    11:perf_event:/
    10:devices:/system.slice/docker.service
    9:freezer:/
    8:memory:/system.slice/docker.service
    7:cpuset:/
    6:blkio:/system.slice/docker.service
    5:hugetlb:/
    4:pids:/system.slice/docker.service
    3:cpuacct,cpu:/system.slice/docker.service
    2:net_prio,net_cls:/
    1:name=systemd:/system.slice/docker.service
""")

# ctrsploit/ctrsploit#280: /proc/1/cgroup inside a Docker container, cgroupfs driver
# (v1 hierarchies, plus a unified line that still shows the host's containerd.service).
DOCKER_ID = "2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d"
DOCKER_CGROUPFS_V1 = lines(f"""
    12:net_cls,net_prio:/docker/{DOCKER_ID}
    11:freezer:/docker/{DOCKER_ID}
    10:rdma:/
    9:blkio:/docker/{DOCKER_ID}
    8:memory:/docker/{DOCKER_ID}
    7:perf_event:/docker/{DOCKER_ID}
    6:hugetlb:/docker/{DOCKER_ID}
    5:cpuset:/docker/{DOCKER_ID}
    4:devices:/docker/{DOCKER_ID}
    3:pids:/docker/{DOCKER_ID}
    2:cpu,cpuacct:/docker/{DOCKER_ID}
    1:name=systemd:/docker/{DOCKER_ID}
    0::/system.slice/containerd.service
""")

# moby/moby#33352: a Docker container whose name=systemd line stayed at the root.
DOCKER_NO_SYSTEMD_ID = "5dace3de0735f73d2b5048f12d41a71741a02e49668de921fdae62f7e65dc498"
DOCKER_NO_SYSTEMD_V1 = lines(f"""
    13:pids:/
    12:hugetlb:/
    11:net_prio:/
    10:perf_event:/docker/{DOCKER_NO_SYSTEMD_ID}
    9:net_cls:/
    8:freezer:/docker/{DOCKER_NO_SYSTEMD_ID}
    7:devices:/docker/{DOCKER_NO_SYSTEMD_ID}
    6:memory:/docker/{DOCKER_NO_SYSTEMD_ID}
    5:blkio:/docker/{DOCKER_NO_SYSTEMD_ID}
    4:cpuacct:/docker/{DOCKER_NO_SYSTEMD_ID}
    3:cpu:/docker/{DOCKER_NO_SYSTEMD_ID}
    2:cpuset:/docker/{DOCKER_NO_SYSTEMD_ID}
    1:name=systemd:/
""")

# containerd/containerd#285: `docker run fedora cat /proc/self/cgroup`, systemd driver,
# with Docker itself in a container (some hierarchies under /init.scope).
DOCKER_SCOPE_ID = "b33dda97580e721a69fa81742190341f858ea809ec4a9d74a8cfd411b0ee7c26"
DOCKER_SCOPE = f"/system.slice/docker-{DOCKER_SCOPE_ID}.scope"
DOCKER_SYSTEMD_V1 = lines(f"""
    11:perf_event:{DOCKER_SCOPE}
    10:memory:/init.scope{DOCKER_SCOPE}
    9:pids:/init.scope{DOCKER_SCOPE}
    8:devices:/init.scope{DOCKER_SCOPE}
    7:hugetlb:{DOCKER_SCOPE}
    6:blkio:/init.scope{DOCKER_SCOPE}
    5:freezer:{DOCKER_SCOPE}
    4:cpuset:{DOCKER_SCOPE}
    3:cpu,cpuacct:/init.scope{DOCKER_SCOPE}
    2:net_cls,net_prio:{DOCKER_SCOPE}
    1:name=systemd:{DOCKER_SCOPE}
""")

# Framed from a path: Docker's run-metrics docs (quoted in docker/docs#14545) put a
# container at /sys/fs/cgroup/system.slice/docker-<id>.scope on v2 with the systemd
# driver, rootless ones under user@<uid>.service/user.slice; the id is one of the
# scopes moby/moby#4450 shows in `ps -eo pid,user,args,unit`.
DOCKER_V2_ID = "e160a6955208fa7edabb1694762b0757adc64425f7d1c5a86fb0b1c3676a04bb"
DOCKER_SYSTEMD_V2 = [f"0::/system.slice/docker-{DOCKER_V2_ID}.scope"]
DOCKER_ROOTLESS_V2 = [
    f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{DOCKER_V2_ID}.scope"
]

# Framed from paths: netdata/netdata#4868, the blkio tree of a containerd node with
# the kubelet's systemd driver: a static pod (its uid a config hash) and a regular one.
CONTAINERD_STATIC_ID = "2884d57c0e100d7a9a2f9487ce0bc2986bca3430e988af7a4865aff061f51ac5"
CONTAINERD_STATIC_POD = [
    "9:blkio:/kubepods.slice/kubepods-burstable.slice/"
    "kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice/"
    f"cri-containerd-{CONTAINERD_STATIC_ID}.scope"
]
CONTAINERD_BESTEFFORT_ID = "66be9b2efdf4d85288c319b8c1a2f50d2439b5617e36f45d9d0d0be1381113be"
CONTAINERD_BESTEFFORT_POD = [
    "9:blkio:/kubepods.slice/kubepods-besteffort.slice/"
    "kubepods-besteffort-pode1465238_4518_4c21_832f_fd9f87033dad.slice/"
    f"cri-containerd-{CONTAINERD_BESTEFFORT_ID}.scope"
]

# Framed from paths: containerd/nri#227, CRI-O on OpenShift (cgroup v2, systemd): a
# container's scope, and a pod sandbox's cgroup, which has no .scope.
CRIO_V2_ID = "805b902ed98fdc1409c76e9aa94964787a904c80f46fc3ee74283509108f5e73"
CRIO_POD_SLICE = (
    "/kubepods.slice/kubepods-burstable.slice/"
    "kubepods-burstable-pod35550f44_f691_427e_b57d_ab6127d2cb65.slice"
)
CRIO_SYSTEMD_V2 = [f"0::{CRIO_POD_SLICE}/crio-{CRIO_V2_ID}.scope"]
CRIO_SANDBOX_ID = "468f848e2ebec7203ed55748d08337851af589ac42eb551c572446a5c68fe631"
CRIO_SANDBOX_V2 = [f"0::{CRIO_POD_SLICE}/crio-{CRIO_SANDBOX_ID}"]

# opencontainers/runc#4620: /proc/21689/cgroup of calico-node under CRI-O (v1,
# systemd driver), its first three lines; and the CGroup: of `systemctl status` for a
# crio-conmon scope on the same node, framed as its name=systemd line.
CRIO_V1_ID = "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c"
CRIO_V1_PATH = (
    "/kubepods.slice/kubepods-burstable.slice/"
    "kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/"
    f"crio-{CRIO_V1_ID}.scope"
)
CRIO_SYSTEMD_V1 = [f"13:freezer:{CRIO_V1_PATH}", f"12:cpuset:{CRIO_V1_PATH}", "11:files:/"]
CRIO_CONMON_SCOPE = (
    "crio-conmon-32da98c8522068be05a7510a3eddb09cad6ed2f03286180d0e931d0d0b6224a6.scope"
)
CRIO_CONMON = [
    "1:name=systemd:/kubepods.slice/kubepods-burstable.slice/"
    f"kubepods-burstable-pod207aaad1_659f_4db8_88e0_46e0cdcc3004.slice/{CRIO_CONMON_SCOPE}"
]

# duckdb/duckdb#16608 (the same form in open-telemetry/opentelemetry-java#4507):
# containerd on cgroupfs under a kubelet configured for systemd writes the systemd
# "slice:prefix:name" triple as one directory; some hierarchies sit under
# containerd.service. The first six lines of the pasted file.
COLON_ID = "6ef14b5a76df7b5d24285e3a04ccbc6fd323620272b3787b5dc440fc1b75d294"
COLON_LEAF = (
    f"kubepods-burstable-podb96a7488_3ee1_4bdc_9c98_155cc887b417.slice:cri-containerd:{COLON_ID}"
)
CONTAINERD_COLON = [
    f"13:cpuset:/{COLON_LEAF}",
    f"12:rdma:/{COLON_LEAF}",
    f"11:blkio:/system.slice/containerd.service/{COLON_LEAF}",
    f"10:pids:/system.slice/containerd.service/{COLON_LEAF}",
    f"9:cpu,cpuacct:/system.slice/containerd.service/{COLON_LEAF}",
    f"8:misc:/{COLON_LEAF}",
]

# adoptium/adoptium-support#638: /proc/self/cgroup in a Kubernetes pod, kubelet's
# cgroupfs driver (v1), its first six lines.
CGROUPFS_POD_UID = "d7874f44-eee0-423c-83c9-f246075bdde1"
CGROUPFS_ID = "fbaa59723cd1f05d310e6f48b5d49a9d9e9552b7fde2205d0a2e2b5f60ec21ba"
CGROUPFS_PATH = f"/kubepods/burstable/pod{CGROUPFS_POD_UID}/{CGROUPFS_ID}"
KUBEPODS_CGROUPFS_V1 = lines(f"""
    12:rdma:{CGROUPFS_PATH}
    11:hugetlb:{CGROUPFS_PATH}
    10:memory:{CGROUPFS_PATH}
    9:pids:{CGROUPFS_PATH}
    8:freezer:{CGROUPFS_PATH}
    7:blkio:{CGROUPFS_PATH}
""")

# Framed from a path: siderolabs/talos#3950, cAdvisor's id of a best-effort pod's
# container (cgroupfs driver).
TALOS_ID = "a684bbdd0c4b6937b5ece9713bed661305ab0de570eb12b7c28a032aaf602937"
KUBEPODS_CGROUPFS_V2 = [
    f"0::/kubepods/besteffort/pod18d34ce4-50c7-452c-9df8-53c4a3fdf363/{TALOS_ID}"
]

# Documented: a Guaranteed pod sits right under /kubepods (Yelp/paasta#2763, and the
# k3s layout in CJLove/rt-operator's notes); uid and id made up.
GUARANTEED_ID = "0123456789abcdef" * 4
KUBEPODS_GUARANTEED = [
    f"0::/kubepods/pod6a1e1c4f-0c4e-4f0e-9d8e-7c1b2a3d4e5f/{GUARANTEED_ID}",
]

# podman-container-tools/podman#20423: /proc/<pid>/cgroup of a container on Fedora 38
# (v2), crun's /container child cgroup.
PODMAN_ID = "cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb"
PODMAN_V2 = [
    f"0::/user.slice/user-0.slice/user@0.service/machine.slice/libpod-{PODMAN_ID}.scope/container"
]

# podman-container-tools/podman#10602: a systemd container on Ubuntu 20.04 (v1),
# lines 12 to 1: its own systemd holds the process in init.scope.
PODMAN_SYSTEMD_ID = "2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24"
PODMAN_SCOPE = f"/machine.slice/libpod-{PODMAN_SYSTEMD_ID}.scope"
PODMAN_SYSTEMD_V1 = lines(f"""
    12:pids:{PODMAN_SCOPE}
    11:memory:{PODMAN_SCOPE}
    10:blkio:{PODMAN_SCOPE}
    9:devices:{PODMAN_SCOPE}
    8:freezer:{PODMAN_SCOPE}
    7:rdma:{PODMAN_SCOPE}
    6:hugetlb:{PODMAN_SCOPE}
    5:cpu,cpuacct:{PODMAN_SCOPE}
    4:net_cls,net_prio:{PODMAN_SCOPE}
    3:cpuset:{PODMAN_SCOPE}
    2:perf_event:{PODMAN_SCOPE}
    1:name=systemd:{PODMAN_SCOPE}/init.scope
""")

# Framed from paths: falcosecurity/libs#1613, `systemd-cgls` of nginx under Podman: the
# conmon monitor in its own scope, the payload in the container's /container child.
CONMON_ID = "a2bc7b153f034b17f358cde43a7f8c7475147e8a0d1b2573c26473244ec44ce4"
PODMAN_CONMON = [f"0::/machine.slice/libpod-conmon-{CONMON_ID}.scope"]
PODMAN_PAYLOAD = [f"0::/machine.slice/libpod-{CONMON_ID}.scope/container"]

# Framed from a path: kubernetes/minikube#11280, kube-proxy under CRI-O inside a
# minikube node that is itself a Docker container.
NESTED_ID = "358607a37e7ada357032e7f5729c9ae6a3efdb7962acbcbe47ff6a3c5506cb1c"
NESTED_IN_DOCKER = [
    "0::/docker/d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22/"
    "kubepods.slice/kubepods-besteffort.slice/"
    "kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/"
    f"crio-{NESTED_ID}.scope"
]

# Framed from paths: flatpak/xdg-desktop-portal-gtk#504, `systemctl --user status`: a
# user service in app.slice, and one whose name systemd escaped.
USER_SERVICE = [
    "0::/user.slice/user-1000.slice/user@1000.service/app.slice/xdg-desktop-portal-gtk.service"
]
ESCAPED_UNIT = r"app-rofi-firefox\x20\x2d\x2dname\x20firefox-24101.service"
USER_ESCAPED = [f"0::/user.slice/user-1000.slice/user@1000.service/app.slice/{ESCAPED_UNIT}"]

# Framed from a path: systemd/systemd#15367, a `systemd-run --user` transient scope.
USER_RUN_SCOPE = [
    "0::/user.slice/user-1000.slice/user@1000.service/run-r42e6ac3d03ec49989f380cd3116efdeb.scope"
]

# moby/moby#34220: a process in a login session's scope on the name=systemd line and
# in a 32-hex /docker/ cgroup elsewhere: not a Docker id, so not a container.
SESSION_V1 = lines("""
    10:perf_event:/docker/c8cef9e2ff114e429cb845559c4a0dff
    9:cpuset:/docker/c8cef9e2ff114e429cb845559c4a0dff
    8:net_cls:/docker/c8cef9e2ff114e429cb845559c4a0dff
    7:devices:/user.slice
    6:hugetlb:/docker/c8cef9e2ff114e429cb845559c4a0dff
    5:blkio:/user.slice
    4:memory:/user.slice
    3:cpuacct,cpu:/user.slice
    2:freezer:/docker/c8cef9e2ff114e429cb845559c4a0dff
    1:name=systemd:/user.slice/user-52321.slice/session-128207.scope
""")

# Documented: systemd.special(7) puts system services in system.slice and PID 1 in
# init.scope; the kernel's cgroup-v2.rst (Namespace) shows a cgroup outside the
# reader's cgroup namespace with leading "/.." components.
SYSTEM_SERVICE_V2 = ["0::/system.slice/nginx.service"]
INIT_SCOPE_V2 = ["0::/init.scope"]
OTHER_NAMESPACE_V2 = ["0::/../../system.slice/nginx.service"]

CASES = {
    "this machine": (THIS_MACHINE, CgroupIdentity()),
    "dockerd's service, v1": (DOCKERD_SERVICE_V1, CgroupIdentity(unit="docker.service")),
    "docker cgroupfs, v1": (
        DOCKER_CGROUPFS_V1,
        CgroupIdentity(container_id=DOCKER_ID, runtime=RUNTIME_DOCKER),
    ),
    "docker, name=systemd at the root": (
        DOCKER_NO_SYSTEMD_V1,
        CgroupIdentity(container_id=DOCKER_NO_SYSTEMD_ID, runtime=RUNTIME_DOCKER),
    ),
    "docker systemd driver, v1": (
        DOCKER_SYSTEMD_V1,
        CgroupIdentity(container_id=DOCKER_SCOPE_ID, runtime=RUNTIME_DOCKER),
    ),
    "docker systemd driver, v2": (
        DOCKER_SYSTEMD_V2,
        CgroupIdentity(container_id=DOCKER_V2_ID, runtime=RUNTIME_DOCKER),
    ),
    "rootless docker, v2": (
        DOCKER_ROOTLESS_V2,
        CgroupIdentity(container_id=DOCKER_V2_ID, runtime=RUNTIME_DOCKER, user=1000),
    ),
    "containerd, static pod": (
        CONTAINERD_STATIC_POD,
        CgroupIdentity(
            container_id=CONTAINERD_STATIC_ID,
            runtime=RUNTIME_CONTAINERD,
            pod_uid="8daa50c3a64c9ff60bb9eab7b44b56fd",
        ),
    ),
    "containerd, best-effort pod": (
        CONTAINERD_BESTEFFORT_POD,
        CgroupIdentity(
            container_id=CONTAINERD_BESTEFFORT_ID,
            runtime=RUNTIME_CONTAINERD,
            pod_uid="e1465238-4518-4c21-832f-fd9f87033dad",
        ),
    ),
    "cri-o systemd, v2": (
        CRIO_SYSTEMD_V2,
        CgroupIdentity(
            container_id=CRIO_V2_ID,
            runtime=RUNTIME_CRIO,
            pod_uid="35550f44-f691-427e-b57d-ab6127d2cb65",
        ),
    ),
    "cri-o pod sandbox, v2": (
        CRIO_SANDBOX_V2,
        CgroupIdentity(
            container_id=CRIO_SANDBOX_ID,
            runtime=RUNTIME_CRIO,
            pod_uid="35550f44-f691-427e-b57d-ab6127d2cb65",
        ),
    ),
    "cri-o systemd, v1": (
        CRIO_SYSTEMD_V1,
        CgroupIdentity(
            container_id=CRIO_V1_ID,
            runtime=RUNTIME_CRIO,
            pod_uid="a5c1f8d5-1919-434d-add7-4afaafdaef89",
        ),
    ),
    "cri-o conmon is not a container": (
        CRIO_CONMON,
        CgroupIdentity(unit=CRIO_CONMON_SCOPE, pod_uid="207aaad1-659f-4db8-88e0-46e0cdcc3004"),
    ),
    "containerd slice:prefix:id": (
        CONTAINERD_COLON,
        CgroupIdentity(
            container_id=COLON_ID,
            runtime=RUNTIME_CONTAINERD,
            pod_uid="b96a7488-3ee1-4bdc-9c98-155cc887b417",
        ),
    ),
    "kubepods cgroupfs, v1": (
        KUBEPODS_CGROUPFS_V1,
        CgroupIdentity(container_id=CGROUPFS_ID, pod_uid=CGROUPFS_POD_UID),
    ),
    "kubepods cgroupfs, v2": (
        KUBEPODS_CGROUPFS_V2,
        CgroupIdentity(container_id=TALOS_ID, pod_uid="18d34ce4-50c7-452c-9df8-53c4a3fdf363"),
    ),
    "kubepods guaranteed": (
        KUBEPODS_GUARANTEED,
        CgroupIdentity(container_id=GUARANTEED_ID, pod_uid="6a1e1c4f-0c4e-4f0e-9d8e-7c1b2a3d4e5f"),
    ),
    "podman, v2": (
        PODMAN_V2,
        CgroupIdentity(container_id=PODMAN_ID, runtime=RUNTIME_PODMAN, user=0),
    ),
    "podman systemd container, v1": (
        PODMAN_SYSTEMD_V1,
        CgroupIdentity(unit="init.scope", container_id=PODMAN_SYSTEMD_ID, runtime=RUNTIME_PODMAN),
    ),
    "podman conmon is not a container": (
        PODMAN_CONMON,
        CgroupIdentity(unit=f"libpod-conmon-{CONMON_ID}.scope"),
    ),
    "podman payload": (
        PODMAN_PAYLOAD,
        CgroupIdentity(container_id=CONMON_ID, runtime=RUNTIME_PODMAN),
    ),
    "cri-o in a docker node": (
        NESTED_IN_DOCKER,
        CgroupIdentity(
            container_id=NESTED_ID,
            runtime=RUNTIME_CRIO,
            pod_uid="2ca4a155-3599-498d-bb9d-4446693fa3ea",
        ),
    ),
    "user service": (
        USER_SERVICE,
        CgroupIdentity(unit="xdg-desktop-portal-gtk.service", user=1000),
    ),
    "user service, escaped name": (USER_ESCAPED, CgroupIdentity(unit=ESCAPED_UNIT, user=1000)),
    "user transient scope": (
        USER_RUN_SCOPE,
        CgroupIdentity(unit="run-r42e6ac3d03ec49989f380cd3116efdeb.scope", user=1000),
    ),
    "login session, v1": (
        SESSION_V1,
        CgroupIdentity(unit="session-128207.scope", user=52321),
    ),
    "system service, v2": (SYSTEM_SERVICE_V2, CgroupIdentity(unit="nginx.service")),
    "pid 1, v2": (INIT_SCOPE_V2, CgroupIdentity(unit="init.scope")),
    "another cgroup namespace": (OTHER_NAMESPACE_V2, CgroupIdentity(unit="nginx.service")),
}


@pytest.mark.parametrize(("cgroup", "expected"), CASES.values(), ids=CASES.keys())
def test_identity_of_each_layout(cgroup: list[str], expected: CgroupIdentity) -> None:
    """Each published layout gives its unit, container, runtime, pod and user."""
    assert identity_of(cgroup) == expected


def test_a_container_on_any_line_wins_over_a_unit() -> None:
    """A v1 file with a unit on name=systemd and a container on cpu names the container."""
    cgroup = [
        f"3:cpu,cpuacct:/docker/{DOCKER_ID}",
        "1:name=systemd:/user.slice/user-1000.slice/session-2.scope",
    ]
    assert identity_of(cgroup) == CgroupIdentity(container_id=DOCKER_ID, runtime=RUNTIME_DOCKER)


def test_the_name_systemd_line_comes_before_the_others() -> None:
    """Without a container, the name=systemd line's unit wins over the cpu line's."""
    cgroup = [
        "3:cpu,cpuacct:/system.slice/other.service",
        "1:name=systemd:/system.slice/nginx.service",
    ]
    assert identity_of(cgroup).unit == "nginx.service"


def test_a_unit_above_the_container_is_not_the_process_unit() -> None:
    """containerd.service above a container is the runtime's unit, not the container's."""
    path = f"/system.slice/containerd.service/{COLON_LEAF}"
    assert identity_of_path(path).unit is None


def test_ids_that_are_not_64_hex_digits_are_not_containers() -> None:
    """Short, upper-case or non-hex ids after a runtime prefix name no container."""
    for path in (
        "/docker/c8cef9e2ff114e429cb845559c4a0dff",
        f"/system.slice/docker-{DOCKER_ID.upper()}.scope",
        f"/system.slice/docker-{DOCKER_ID[:-1]}g.scope",
        f"/kubepods/burstable/podnotauid/{DOCKER_ID}",
        f"/somewhere/{DOCKER_ID}",
    ):
        assert identity_of_path(path).container_id is None, path


def test_lines_that_are_not_cgroup_lines_are_skipped() -> None:
    """Empty, colon-less and partial lines name nothing and raise nothing."""
    assert identity_of(["", "garbage", "0:", "1:cpu"]) == CgroupIdentity()


def test_this_process_cgroup_through_procfs() -> None:
    """identity_of of this process's cgroup read by ProcFS equals that of its own file."""
    expected = identity_of(Path("/proc/self/cgroup").read_text().splitlines())
    assert identity_of(ProcFS().cgroup(os.getpid())) == expected


# -- the kubelet's log links --------------------------------------------------------------

# Names from rancher/rancher#7688 (`ls -l /var/log/containers`), fluent/fluent-operator#855
# (a static pod) and luxas/kubernetes-on-arm#99 (a pod name with dots), each a link to
# where the kubelet pointed it, which does not exist here: only names are read.
KUBELET_LINKS = {
    "heapster-4285517626-3wlf8_kube-system_heapster-"
    "a8a4511ad8ae87731a38acb9ec7d4b671fbd93d8f8bb753c2bb094298f1ecf15.log": (
        "/var/log/pods/9c470dbf-6ed7-11e7-8f37-02b893ed240a/heapster_0.log"
    ),
    "kube-dns-2981845537-flr73_kube-system_dnsmasq-"
    "0e606b95031fe96602cc405db9708a7032226782831a7908cdeba8b2735e6960.log": (
        "/var/log/pods/a11c4542-6ed7-11e7-8f37-02b893ed240a/dnsmasq_0.log"
    ),
    "kube-apiserver-pa-drs-cluster_kube-system_kube-apiserver-"
    "1ba81788e9d8a48998fea25d5fe511c774f9de76eaaca81c50ff44b5960223b2.log": (
        "/var/log/pods/kube-system_kube-apiserver-pa-drs-cluster_"
        "8b1e9057c80f383869339e73f7286d7b/kube-apiserver/0.log"
    ),
    "k8s-master-192.168.1.30_default_scheduler-"
    "9acaf0821554295896df64c616431733049ac1fbf340b73234ba06ff66f88f1f.log": (
        "/var/lib/docker/containers/9acaf0821554295896df64c616431733049ac1fbf340b73234ba06ff66f88f1f"
    ),
}


def kubelet_name(pod: str, namespace: str, container: str, container_id: str) -> str:
    """The link name kubernetes' pkg/kubelet/kuberuntime/legacy.go logSymlink builds."""
    name = f"{pod}_{namespace}_{container}-{container_id}"
    return name[: 255 - len(".log")] + ".log"  # ext4's 255, as the kubelet cuts it


@pytest.fixture
def containers(tmp_path: Path) -> Path:
    """A /var/log/containers of the kubelet's links, and names it never makes."""
    directory = tmp_path / "containers"
    directory.mkdir()
    for name, target in KUBELET_LINKS.items():
        (directory / name).symlink_to(target)
    cut = kubelet_name("a" * 200, "default", "app", DOCKER_ID)  # the id is cut short
    for name in (cut, "README", "x.log", f"a_b-{DOCKER_ID}.log", f"a_b_c_d-{DOCKER_ID}.log"):
        (directory / name).touch()
    (directory / f"__-{DOCKER_ID}.log").touch()  # three empty parts
    return directory


def test_kubelet_container_logs_maps_ids_to_pods(containers: Path) -> None:
    """Each kubelet link name gives its container id's pod, namespace and container."""
    assert kubelet_container_logs(str(containers)) == {
        "a8a4511ad8ae87731a38acb9ec7d4b671fbd93d8f8bb753c2bb094298f1ecf15": PodInfo(
            namespace="kube-system", pod="heapster-4285517626-3wlf8", container="heapster"
        ),
        "0e606b95031fe96602cc405db9708a7032226782831a7908cdeba8b2735e6960": PodInfo(
            namespace="kube-system", pod="kube-dns-2981845537-flr73", container="dnsmasq"
        ),
        "1ba81788e9d8a48998fea25d5fe511c774f9de76eaaca81c50ff44b5960223b2": PodInfo(
            namespace="kube-system",
            pod="kube-apiserver-pa-drs-cluster",
            container="kube-apiserver",
        ),
        "9acaf0821554295896df64c616431733049ac1fbf340b73234ba06ff66f88f1f": PodInfo(
            namespace="default", pod="k8s-master-192.168.1.30", container="scheduler"
        ),
    }


def test_kubelet_container_logs_reads_a_bounded_count(containers: Path) -> None:
    """At most limit entries of the directory are looked at."""
    assert len(kubelet_container_logs(str(containers), limit=2)) <= 2
    assert kubelet_container_logs(str(containers), limit=0) == {}


def test_kubelet_container_logs_without_the_directory_is_empty(tmp_path: Path) -> None:
    """A node without /var/log/containers (not a Kubernetes node) gives an empty mapping."""
    assert kubelet_container_logs(str(tmp_path / "absent")) == {}


def test_kubelet_container_logs_reports_other_errors(tmp_path: Path) -> None:
    """A path that is not a directory raises the listing's OSError."""
    (tmp_path / "file").touch()
    with pytest.raises(NotADirectoryError):
        kubelet_container_logs(str(tmp_path / "file"))
