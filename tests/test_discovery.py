"""discover(): real processes in real venvs found and grouped; fixture procfs trees for what
this machine cannot show (containers, pods, units, reused pids, embedding servers).

Real processes are the test's own children (venvs made with ``python -m venv
--without-pip``), always killed; assertions look only at targets holding them, since
the machine runs other Python processes too. Fixture trees copy the shape of this
machine's ``/proc/<pid>/stat`` and ``/proc/stat`` (Linux 6.18, x86_64, as
tests/test_procfs.py), and cgroup lines of published real files (named where used).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from exporter.config import ConfigError, DiscoverConfig, ProcessMatcherConfig, config_from_mapping
from exporter.sources.discovery.naming import (
    NameFields,
    assign_names,
    command_service,
    render_name,
    sanitize,
    venv_name,
)
from exporter.sources.discovery.processes import (
    KIND_PROCESS,
    Discovery,
    ProcessTarget,
    discover,
)
from exporter.sources.discovery.procfs import ProcessGone, ProcFS

SLEEP = "import sys, time; print('ready', flush=True); time.sleep(60)"
ON = DiscoverConfig(processes=True)
MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
BASE_PYTHON = os.path.realpath(sys.executable)  # a venv's python links to its base


# -- real processes --------------------------------------------------------------------


def make_venv(path: Path, *options: str, dist: str = "demo") -> Path:
    """A real venv (no pip) holding one fake distribution."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", *options, str(path)],
        check=True,
        timeout=120,
    )
    site = site_of(path)
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    return path


def site_of(venv: Path) -> Path:
    """The venv's site-packages."""
    (site,) = venv.glob("lib/python*/site-packages")
    return site


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three venvs, made once for the module: alpha, beta and a flood's own."""
    base = tmp_path_factory.mktemp("venvs")
    return {
        name: make_venv(base / f"disc-{name}", dist=name) for name in ("alpha", "beta", "flood")
    }


class Children:
    """Real children started by a test; all killed and reaped at its end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, args: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
        """Start ``args`` (a script printing ready) and wait until it is up."""
        child: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
            list(args), stdout=subprocess.PIPE, text=True, **kwargs
        )
        self.started.append(child)
        assert child.stdout is not None
        assert child.stdout.readline().startswith("ready")
        return child

    def stop(self, child: subprocess.Popen[str]) -> None:
        """Kill and reap one child."""
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()

    def stop_all(self) -> None:
        """Kill and reap every child still running."""
        for child in self.started:
            if child.returncode is None:
                self.stop(child)


@pytest.fixture
def children() -> Iterator[Children]:
    """Children killed when the test ends, whatever happens."""
    started = Children()
    try:
        yield started
    finally:
        started.stop_all()


def holding(discovery: Discovery, pid: int) -> ProcessTarget:
    """The one target whose processes include ``pid``."""
    found = [t for t in discovery.targets if pid in {p for p, _ in t.processes}]
    assert len(found) == 1, (pid, discovery.targets)
    return found[0]


def pids_of(target: ProcessTarget) -> set[int]:
    """The pids of a target's processes."""
    return {pid for pid, _ in target.processes}


def assert_consistent(discovery: Discovery) -> None:
    """No pid in two targets, no empty target, counts that add up, names unique."""
    every = [pid for t in discovery.targets for pid, _ in t.processes]
    assert len(every) == len(set(every))
    assert all(t.processes for t in discovery.targets)
    assert discovery.python_processes == len(every)
    names = [t.name for t in discovery.targets]
    assert names == sorted(set(names))


def test_processes_in_two_venvs_are_one_target_per_venv(
    venvs: dict[str, Path], children: Children, tmp_path: Path
) -> None:
    """Two processes of venv alpha are one target, beta's another, each with its site-packages."""
    alpha = str(venvs["alpha"] / "bin" / "python")
    beta = str(venvs["beta"] / "bin" / "python")
    a1 = children.start([alpha, "-c", SLEEP], cwd=tmp_path)
    a2 = children.start([alpha, "-c", SLEEP], cwd=tmp_path)
    b1 = children.start([beta, "-c", SLEEP], cwd=tmp_path)
    found = discover(ProcFS(), ON)
    assert_consistent(found)
    target_a, target_b = holding(found, a1.pid), holding(found, b1.pid)
    assert target_a is holding(found, a2.pid)
    assert pids_of(target_a) == {a1.pid, a2.pid}
    assert pids_of(target_b) == {b1.pid}
    assert target_a.kind == KIND_PROCESS
    assert target_a.paths == (str(site_of(venvs["alpha"])),)
    assert target_b.paths == (str(site_of(venvs["beta"])),)
    assert target_a.venv == str(venvs["alpha"])
    assert target_a.pyvenv_cfg == str(venvs["alpha"] / "pyvenv.cfg")
    assert target_a.python_version == ".".join(map(str, sys.version_info[:3]))
    assert target_a.executable == BASE_PYTHON
    assert target_a.pid == min(pids_of(target_a), key=lambda p: ProcFS().stat(p).starttime)
    assert target_a.root == f"/proc/{target_a.pid}/root"
    assert target_a.cwd == str(tmp_path)
    assert ("exe", BASE_PYTHON) in target_a.labels
    assert target_a.name == "disc-alpha"
    assert target_b.name == "disc-beta"


def test_a_parent_and_three_forked_workers_are_one_target_of_four(
    venvs: dict[str, Path], children: Children, tmp_path: Path
) -> None:
    """A parent that forks three workers and the workers are one target of four processes."""
    script = tmp_path / "server.py"
    script.write_text(
        "import os, sys, time\n"
        "workers = []\n"
        "for _ in range(3):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    workers.append(pid)\n"
        "print('ready', *workers, flush=True)\n"
        "time.sleep(60)\n"
    )
    python = str(venvs["alpha"] / "bin" / "python")
    child = subprocess.Popen([python, str(script)], stdout=subprocess.PIPE, text=True)
    children.started.append(child)
    assert child.stdout is not None
    line = child.stdout.readline().split()
    workers = [int(p) for p in line[1:]]
    try:
        found = discover(ProcFS(), ON)
        target = holding(found, child.pid)
        assert pids_of(target) == {child.pid, *workers}
        assert target.pid == child.pid  # the oldest: the parent
        assert target.name == "server"  # the script, without .py
        assert target.paths == (str(site_of(venvs["alpha"])),)
    finally:
        for pid in workers:
            os.kill(pid, 9)


def test_a_process_that_exits_disappears_at_the_next_call(
    venvs: dict[str, Path], children: Children, tmp_path: Path
) -> None:
    """A target whose only process exited is gone from the next discover(); its sibling stays."""
    python = str(venvs["beta"] / "bin" / "python")
    first = children.start([python, "-c", SLEEP], cwd=tmp_path)
    second = children.start([python, "-c", SLEEP], cwd=tmp_path)
    found = discover(ProcFS(), ON)
    assert pids_of(holding(found, first.pid)) == {first.pid, second.pid}
    children.stop(first)
    again = discover(ProcFS(), ON, found)
    assert pids_of(holding(again, second.pid)) == {second.pid}
    children.stop(second)
    last = discover(ProcFS(), ON, again)
    assert not [t for t in last.targets if t.venv == str(venvs["beta"])]


def test_short_lived_processes_during_repeated_calls_leave_nothing_behind(
    venvs: dict[str, Path],
) -> None:
    """300 short-lived processes started while discover() runs: no error, no pid counted
    twice, and once they are reaped no target of theirs is left."""
    python = str(venvs["flood"] / "bin" / "python")
    started: list[int] = []
    done = threading.Event()

    def flood() -> None:
        try:
            for _ in range(30):  # 30 batches of 10: bounded
                batch = [
                    subprocess.Popen([python, "-S", "-c", "pass"], stdout=subprocess.DEVNULL)
                    for _ in range(10)
                ]
                started.extend(p.pid for p in batch)
                for p in batch:
                    p.wait(30)
        finally:
            done.set()

    thread = threading.Thread(target=flood)
    thread.start()
    procfs = ProcFS()
    result = None
    calls = 0
    gone = 0
    try:
        while not done.is_set() and calls < 2000:
            result = discover(procfs, ON, result)
            assert_consistent(result)
            gone += result.gone
            calls += 1
    finally:
        thread.join(120)
    assert len(started) == 300
    assert calls > 1
    final = discover(procfs, ON, result)
    assert_consistent(final)
    flooded = set(started)
    assert not [t for t in final.targets if pids_of(t) & flooded]
    assert not [t for t in final.targets if t.venv == str(venvs["flood"])]
    assert gone >= 0  # counted, never negative; a deterministic case follows


class ReapingProcFS(ProcFS):
    """The real /proc, but ``victim`` is killed and reaped right after the listing (or
    right before its executable is read): a real process that exits mid-read."""

    def __init__(self, victim: subprocess.Popen[str], *, at: str) -> None:
        super().__init__()
        self.victim = victim
        self.at = at

    def _reap(self) -> None:
        if self.victim.returncode is None:
            self.victim.kill()
            self.victim.wait(10)

    def pids(self) -> list[int]:
        """The listing; then the victim exits, before any of its files is read."""
        listed = super().pids()
        if self.at == "listing":
            self._reap()
        return listed

    def exe(self, pid: int):  # type: ignore[no-untyped-def]
        """The victim exits just before its executable is read."""
        if self.at == "exe" and pid == self.victim.pid:
            self._reap()
        return super().exe(pid)


@pytest.mark.parametrize("at", ["listing", "exe"])
def test_a_process_exiting_mid_read_is_counted_gone_and_not_a_target(
    venvs: dict[str, Path], children: Children, at: str
) -> None:
    """A listed process that exits before (or while) it is read counts in ``gone``, nowhere else."""
    victim = children.start([str(venvs["alpha"] / "bin" / "python"), "-c", SLEEP])
    procfs = ReapingProcFS(victim, at=at)
    found = discover(procfs, ON)
    assert found.gone >= 1
    assert not [t for t in found.targets if victim.pid in pids_of(t)]
    with pytest.raises(ProcessGone):
        ProcFS().stat(victim.pid)


def test_matchers_include_and_exclude_real_processes(
    venvs: dict[str, Path], children: Children, tmp_path: Path
) -> None:
    """include keeps only the processes it matches; exclude then drops those it matches."""
    python = str(venvs["alpha"] / "bin" / "python")
    keep = children.start([python, "-c", SLEEP + "  # keep-me"], cwd=tmp_path)
    drop = children.start([python, "-c", SLEEP + "  # drop-me"], cwd=tmp_path)
    only = DiscoverConfig(processes=True, include=(ProcessMatcherConfig(cmdline="keep-me"),))
    found = discover(ProcFS(), only)
    assert {pid for t in found.targets for pid in pids_of(t)} == {keep.pid}
    assert found.excluded >= 1
    both = DiscoverConfig(
        processes=True,
        include=(ProcessMatcherConfig(exe=r"/python3", cmdline="-me"),),
        exclude=(ProcessMatcherConfig(cmdline="drop-me"),),
    )
    found = discover(ProcFS(), both)
    assert {pid for t in found.targets for pid in pids_of(t)} == {keep.pid}
    assert drop.pid not in {pid for t in found.targets for pid in pids_of(t)}


def test_colliding_names_are_made_unique_and_stay_while_their_processes_live(
    tmp_path: Path, children: Children
) -> None:
    """Two venvs both called shop/.venv: the older target is shop, the other shop-2, and it
    keeps shop-2 after the older exits; hostile characters in a venv name become _."""
    one = make_venv(tmp_path / "a" / "shop" / ".venv")
    two = make_venv(tmp_path / "b" / "shop" / ".venv")
    odd = make_venv(tmp_path / "c" / "my shop\u00e9+x" / ".venv")
    only = DiscoverConfig(
        processes=True, include=(ProcessMatcherConfig(exe="", cmdline=str(tmp_path)),)
    )
    older = children.start([str(one / "bin" / "python"), "-c", SLEEP], cwd=tmp_path)
    time.sleep(1.1)  # start times are whole clock ticks: make the order certain
    newer = children.start([str(two / "bin" / "python"), "-c", SLEEP], cwd=tmp_path)
    weird = children.start([str(odd / "bin" / "python"), "-c", SLEEP], cwd=tmp_path)
    first = discover(ProcFS(), only)
    assert holding(first, older.pid).name == "shop"
    assert holding(first, newer.pid).name == "shop-2"
    assert holding(first, weird.pid).name == "my_shop__x"
    again = discover(ProcFS(), only, first)
    assert {t.name for t in again.targets} == {t.name for t in first.targets}
    children.stop(older)
    later = discover(ProcFS(), only, again)
    assert holding(later, newer.pid).name == "shop-2"
    # Without the previous result (an agent restarted), the oldest takes the plain name.
    assert holding(discover(ProcFS(), only), newer.pid).name == "shop"


def test_the_name_template_fills_in_its_fields(
    venvs: dict[str, Path], children: Children, tmp_path: Path
) -> None:
    """name: "{venv}-{exe_base}" gives the venv's and the interpreter's names, sanitised."""
    child = children.start([str(venvs["alpha"] / "bin" / "python"), "-c", SLEEP])
    found = discover(ProcFS(), DiscoverConfig(processes=True, name="{venv} on {exe_base}"))
    assert holding(found, child.pid).name == f"disc-alpha_on_{os.path.basename(BASE_PYTHON)}"


def test_virtual_env_names_the_venv_of_a_process_started_through_path(
    venvs: dict[str, Path], children: Children, tmp_path: Path
) -> None:
    """A python found through PATH (argv[0] "python") with VIRTUAL_ENV set is in that venv."""
    venv = venvs["beta"]
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(venv), "SECRET": "hunter2"}
    child = children.start(["python", "-c", SLEEP], env=env, cwd=tmp_path)
    assert ProcFS().cmdline(child.pid)[0] == "python"
    found = discover(ProcFS(), ON)
    target = holding(found, child.pid)
    assert target.venv == str(venv)
    assert target.paths == (str(site_of(venv)),)


def test_pythonpath_comes_first_and_only_commit_names_are_kept(
    venvs: dict[str, Path], children: Children, tmp_path: Path
) -> None:
    """PYTHONPATH's directories (a relative one from cwd) come before site-packages; of the
    environment only the commit names asked for are kept, no secret anywhere."""
    (tmp_path / "extra").mkdir()
    (tmp_path / "rel").mkdir()
    env = {
        "PYTHONPATH": f"{tmp_path / 'extra'}:rel:/does/not/exist",
        "GIT_COMMIT": "0123abc",
        "SECRET": "hunter2",
    }
    child = children.start(
        [str(venvs["alpha"] / "bin" / "python"), "-c", SLEEP], env=env, cwd=tmp_path
    )
    found = discover(ProcFS(), ON, commit_env=("COMMIT", "GIT_COMMIT"))
    target = holding(found, child.pid)
    assert target.paths == (
        str(tmp_path / "extra"),
        str(tmp_path / "rel"),
        str(site_of(venvs["alpha"])),
    )
    assert target.commit_env == (("GIT_COMMIT", "0123abc"),)
    assert "hunter2" not in repr(found) + repr(found._state)


def existing_site_packages(python: str) -> list[str]:
    """What ``python``'s own site.py says its site directories are (those that exist)."""
    code = (
        "import site, os; print('\\n'.join(p for p in site.getsitepackages() if os.path.isdir(p)))"
    )
    out = subprocess.run([python, "-S", "-c", code], capture_output=True, text=True, check=True)
    return [os.path.realpath(p) for p in out.stdout.split()]


def test_include_system_site_packages_adds_the_base_prefix(
    tmp_path: Path, children: Children
) -> None:
    """A venv made with --system-site-packages has its site-packages, then the base's."""
    venv = make_venv(tmp_path / "system-too", "--system-site-packages")
    child = children.start([str(venv / "bin" / "python"), "-c", SLEEP])
    target = holding(discover(ProcFS(), ON), child.pid)
    assert target.paths[0] == str(site_of(venv))
    base = existing_site_packages(BASE_PYTHON)
    assert base, "the base interpreter has a site-packages"
    assert [os.path.realpath(p) for p in target.paths[1:]] == base


@pytest.mark.parametrize("python", sorted({BASE_PYTHON, "/usr/bin/python3"}))
def test_a_system_python_without_venv_gets_its_prefix_site_directories(
    python: str, children: Children, tmp_path: Path
) -> None:
    """A Python run outside any venv reports the site directories its own site.py has
    (site-packages, or Debian's dist-packages), in site.py's order."""
    if not os.path.exists(python):
        pytest.skip(f"{python} is not installed here")
    child = children.start([python, "-c", SLEEP], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    target = holding(discover(ProcFS(), ON), child.pid)
    assert target.venv is None
    assert target.pyvenv_cfg is None
    assert [os.path.realpath(p) for p in target.paths] == existing_site_packages(python)
    assert target.python_version is not None
    assert target.python_version.count(".") >= 1


def maps_libpython() -> bool:
    """Whether this interpreter maps a shared libpython (pyenv's does; Debian's is static)."""
    with open("/proc/self/maps") as maps:
        return "libpython" in maps.read()


@pytest.mark.skipif(not maps_libpython(), reason="this interpreter links libpython statically")
def test_a_server_embedding_libpython_is_found_by_its_maps(
    venvs: dict[str, Path], children: Children, tmp_path: Path
) -> None:
    """A program not named python that maps libpython (a copy of the interpreter called
    appserver, as uWSGI embeds it) is a Python process, its version from libpython's name."""
    server = tmp_path / "bin" / "appserver"
    server.parent.mkdir()
    shutil.copy2(BASE_PYTHON, server)
    env = {"PYTHONHOME": sys.base_prefix}
    child = children.start([str(server), "-c", SLEEP], env=env)
    target = holding(discover(ProcFS(), ON), child.pid)
    assert target.executable == str(server)
    assert target.python_version == MINOR


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_a_reader_as_nobody_counts_root_processes_denied_and_never_fails(
    venvs: dict[str, Path], children: Children
) -> None:
    """discover() run as nobody over the real /proc counts a root Python process as denied,
    lists its pid, and reports no target for it."""
    root_child = children.start([str(venvs["alpha"] / "bin" / "python"), "-c", SLEEP])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, discover, report, exit
        report = "crashed"
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            found = discover(ProcFS(), ON)
            targeted = any(root_child.pid in pids_of(t) for t in found.targets)
            report = f"{found.denied} {int(root_child.pid in found.denied_pids)} {int(targeted)}"
            report += f" {int(root_child.pid in found.new_denied)}"
        except BaseException as exc:
            report = f"crashed {type(exc).__name__}"
        finally:
            os.write(write_end, report.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read().decode()
    os.waitpid(pid, 0)
    denied, listed, in_target, new = report.split()
    assert int(denied) >= 1, report
    assert (listed, in_target, new) == ("1", "0", "1"), report


# -- fixture procfs trees ----------------------------------------------------------------

BTIME = 1796154945
SYSTEM_STAT = f"cpu  416717 2400 69710 89282 4185 0 5762 5003 0 0\nbtime {BTIME}\n"
# /proc/self/stat of `cat` on this machine; pid, comm, state, ppid and starttime filled in.
STAT = (
    "{pid} ({comm}) {state} {ppid} 13929 13253 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 "
    "{starttime} 3133440 358 18446744073709551615 93945921454080 93945921473961 "
    "140720554477600 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 93945921489968 93945921491584 "
    "93946857672704 140720554482393 140720554482413 140720554482413 140720554483691 0\n"
)
MAPS_LINE = "7f7232164000-7f7232165000 r--p 00000000 fe:00 329642".ljust(73) + "{path}\n"
CONTAINER_ID = "5b9fd5b19a3c4e7c5c0bc3e6e2a9b1e0f2d3c4b5a6978877665544332211aabb"
# kubelet (systemd driver) with containerd, cgroup v2, as in containerd/containerd#4900's
# pasted /proc/<pid>/cgroup; the ids here are ours.
POD_CGROUP = (
    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-"
    "pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-" + CONTAINER_ID + ".scope\n"
)
# systemd's own layout for a service on cgroup v2 (systemd.io/CGROUP_DELEGATION).
UNIT_CGROUP = "0::/system.slice/billing.service\n"


class Tree:
    """A fixture procfs: pid directories with stat, cmdline, environ, cgroup, maps, and
    exe, cwd and root links; roots are real directories standing for containers."""

    def __init__(self, base: Path) -> None:
        self.proc = base / "proc"
        self.proc.mkdir()
        (self.proc / "stat").write_text(SYSTEM_STAT)
        self.base = base

    def procfs(self) -> ProcFS:
        """A ProcFS over the tree, 100 clock ticks a second."""
        return ProcFS(str(self.proc), clock_ticks=100)

    def root(self, name: str) -> Path:
        """A directory standing for a container's root file system."""
        root = self.base / "roots" / name
        root.mkdir(parents=True, exist_ok=True)
        return root

    def process(
        self,
        pid: int,
        root: Path,
        *,
        exe: str,
        argv: Sequence[str],
        comm: str = "python3",
        starttime: int = 100_000,
        ppid: int = 1,
        cwd: str = "/",
        environ: dict[str, str] | None = None,
        cgroup: str = "0::/\n",
        maps: Sequence[str] = (),
    ) -> None:
        """Write (or rewrite) one process directory."""
        directory = self.proc / str(pid)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir()
        (directory / "stat").write_text(
            STAT.format(pid=pid, comm=comm, state="S", ppid=ppid, starttime=starttime)
        )
        (directory / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        env = environ or {}
        (directory / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
        (directory / "cgroup").write_text(cgroup)
        (directory / "maps").write_text("".join(MAPS_LINE.format(path=p) for p in maps))
        os.symlink(exe, directory / "exe")
        os.symlink(cwd, directory / "cwd")
        os.symlink(root, directory / "root")


def python_root(tree: Tree, name: str, *, prefix: str = "/usr/local", minor: str = "3.11") -> Path:
    """A container root with a system Python at ``prefix`` and a site-packages."""
    root = tree.root(name)
    (root / prefix.lstrip("/") / "bin").mkdir(parents=True)
    (root / prefix.lstrip("/") / "lib" / f"python{minor}" / "site-packages").mkdir(parents=True)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """An empty fixture procfs."""
    return Tree(tmp_path)


def test_a_kubernetes_container_is_named_namespace_container_with_pod_labels(
    tree: Tree, tmp_path: Path
) -> None:
    """A container's process gets container_id and pod_uid from its cgroup, pod, namespace
    and container from the kubelet's log link names, and the name shop.web."""
    root = python_root(tree, "web")
    tree.process(
        300, root, exe="/usr/local/bin/python3.11", argv=["python", "app.py"], cgroup=POD_CGROUP
    )
    logs = tmp_path / "containers"
    logs.mkdir()
    (logs / f"web-7d4b9c-x2x4q_shop_web-{CONTAINER_ID}.log").symlink_to("/nonexistent")
    config = DiscoverConfig(processes=True, kubelet_logs=str(logs))
    found = discover(tree.procfs(), config)
    (target,) = found.targets
    assert target.name == "shop.web"
    assert target.labels == (
        ("container_id", CONTAINER_ID),
        ("pod_uid", "0a1b2c3d-4e5f-6789-abcd-ef0123456789"),
        ("namespace", "shop"),
        ("pod", "web-7d4b9c-x2x4q"),
        ("container", "web"),
        ("exe", "/usr/local/bin/python3.11"),
    )
    assert target.paths == ("/usr/local/lib/python3.11/site-packages",)
    assert target.python_version == "3.11"
    assert target.oldest_start == pytest.approx(BTIME + 1000.0)
    # The pod is remembered: the next call lists the kubelet's directory no more.
    shutil.rmtree(logs)
    assert discover(tree.procfs(), config, found).targets[0].name == "shop.web"


def test_a_systemd_service_is_named_after_its_unit(tree: Tree) -> None:
    """A process in billing.service is the target billing, with the unit label."""
    root = python_root(tree, "host")
    tree.process(
        310, root, exe="/usr/local/bin/python3.11", argv=["python3", "-m", "x"], cgroup=UNIT_CGROUP
    )
    (target,) = discover(tree.procfs(), ON).targets
    assert target.name == "billing"
    assert target.labels[0] == ("unit", "billing.service")


def test_the_same_venv_in_two_containers_is_two_targets(tree: Tree) -> None:
    """Equal paths in two roots (two containers of one image) are two targets, named apart."""
    for pid, name in ((320, "one"), (321, "two")):
        root = python_root(tree, name)
        tree.process(
            pid, root, exe="/usr/local/bin/python3.11", argv=["python", "worker.py"], starttime=pid
        )
    found = discover(tree.procfs(), ON)
    assert [t.name for t in found.targets] == ["worker", "worker-2"]
    assert [t.pid for t in found.targets] == [320, 321]


def test_a_reused_pid_is_a_new_process(tree: Tree) -> None:
    """A pid whose start time changed is examined anew: the old facts are never reused."""
    root = python_root(tree, "host")
    tree.process(330, root, exe="/usr/local/bin/python3.11", argv=["python", "old.py"], starttime=5)
    first = discover(tree.procfs(), ON)
    assert [t.name for t in first.targets] == ["old"]
    tree.process(330, root, exe="/usr/bin/sleep", argv=["sleep", "9"], comm="sleep", starttime=9)
    second = discover(tree.procfs(), ON, first)
    assert second.targets == ()
    tree.process(
        330, root, exe="/usr/local/bin/python3.11", argv=["python", "new.py"], starttime=12
    )
    third = discover(tree.procfs(), ON, second)
    assert [(t.name, t.processes) for t in third.targets] == [("new", ((330, BTIME + 0.12),))]


def test_unchanged_processes_are_not_read_again(tree: Tree) -> None:
    """A process seen before is known by its stat line alone: its other files may vanish."""
    root = python_root(tree, "host")
    tree.process(340, root, exe="/usr/local/bin/python3.11", argv=["python", "keep.py"])
    first = discover(tree.procfs(), ON)
    for name in ("cmdline", "environ", "cgroup", "maps"):
        (tree.proc / "340" / name).unlink()
    again = discover(tree.procfs(), ON, first)
    assert [t.name for t in again.targets] == ["keep"]
    assert again.unreadable == 0
    assert again.gone == 0


def test_an_exec_into_python_is_seen_by_the_renamed_process(tree: Tree) -> None:
    """A shell that execs python keeps its pid and start time; its new comm makes it read again."""
    root = python_root(tree, "host")
    tree.process(350, root, exe="/bin/sh", argv=["sh", "/entrypoint.sh"], comm="entrypoint.sh")
    first = discover(tree.procfs(), ON, now=BTIME + 10_000)
    assert first.targets == ()
    tree.process(350, root, exe="/usr/local/bin/python3.11", argv=["python", "serve.py"])
    assert [t.name for t in discover(tree.procfs(), ON, first).targets] == ["serve"]


def test_an_embedding_server_is_found_by_the_libpython_it_maps(tree: Tree) -> None:
    """uWSGI (not named python) mapping libpython3.12 is a Python process of 3.12, named
    after the module it serves."""
    root = python_root(tree, "uwsgi", prefix="/usr", minor="3.12")
    tree.process(
        360,
        root,
        exe="/usr/bin/uwsgi-core",
        comm="uwsgi",
        argv=["uwsgi", "--module", "shop.wsgi:application", "--master"],
        maps=["/usr/bin/uwsgi-core", "/usr/lib/x86_64-linux-gnu/libpython3.12.so.1.0"],
    )
    tree.process(
        361, root, exe="/usr/bin/sleep", comm="sleep", argv=["sleep", "1"], maps=["/usr/bin/sleep"]
    )
    (target,) = discover(tree.procfs(), ON, now=BTIME + 10_000).targets
    assert target.name == "shop"
    assert target.python_version == "3.12"
    assert target.paths == ("/usr/lib/python3.12/site-packages",)


def test_the_version_is_read_from_the_interpreter_file_when_its_name_says_none(
    tree: Tree,
) -> None:
    """An interpreter called python3 with no lib/pythonX.Y to go by: its version string is
    read from the binary, as a file."""
    root = tree.root("bare")
    (root / "opt" / "py" / "bin").mkdir(parents=True)
    (root / "opt" / "py" / "bin" / "python3").write_bytes(
        b"\x7fELF" + b"\0" * 5000 + b"pymalloc\x003.12.4\x00strict\x00" + b"\0" * 100
    )
    tree.process(370, root, exe="/opt/py/bin/python3", argv=["python3", "-m", "svc"])
    (target,) = discover(tree.procfs(), ON).targets
    assert target.python_version == "3.12.4"
    assert target.name == "svc"


def test_a_venv_link_out_of_the_root_is_resolved_inside_it(tree: Tree, tmp_path: Path) -> None:
    """argv[0] through an absolute link (/app -> /srv/app) is resolved in the target's root,
    never the host's: the venv found is the container's."""
    root = python_root(tree, "linked")
    venv = root / "srv" / "app" / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/local/bin\nversion = 3.11.9\n")
    (root / "app").symlink_to("/srv/app")
    tree.process(380, root, exe="/usr/local/bin/python3.11", argv=["/app/venv/bin/python", "x.py"])
    (target,) = discover(tree.procfs(), ON).targets
    assert target.venv == "/app/venv"
    assert target.paths == ("/app/venv/lib/python3.11/site-packages",)
    assert target.python_version == "3.11.9"


def venv_root(tree: Tree, name: str) -> Path:
    """A container root with a system Python and a venv at /srv/venv."""
    root = python_root(tree, name)
    venv = root / "srv" / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/local/bin\nversion = 3.11.9\n")
    return root


def test_workers_with_rewritten_titles_join_their_master(tree: Tree) -> None:
    """gunicorn workers titled by setproctitle take their master's venv (same interpreter,
    same root); a child that exec'd the system python by its path does not."""
    root = venv_root(tree, "gunicorn")
    exe = "/usr/local/bin/python3.11"
    master = ["/srv/venv/bin/python", "/srv/venv/bin/gunicorn", "shop.wsgi:application"]
    tree.process(400, root, exe=exe, argv=master, starttime=10)
    for pid in (401, 402):
        worker = ["gunicorn: worker [shop.wsgi:application]"]
        tree.process(pid, root, exe=exe, argv=worker, ppid=400, starttime=20)
    tree.process(403, root, exe=exe, argv=[exe, "-m", "tool"], ppid=400, starttime=30)
    found = discover(tree.procfs(), ON)
    assert [(t.name, [p for p, _ in t.processes]) for t in found.targets] == [
        ("shop", [400, 401, 402]),
        ("tool", [403]),
    ]
    assert found.targets[0].venv == "/srv/venv"
    assert found.targets[1].paths == ("/usr/local/lib/python3.11/site-packages",)


def test_a_master_seen_after_it_rewrote_its_title_is_placed_by_its_maps(tree: Tree) -> None:
    """A process whose arguments say nothing of a venv, mapping an extension module from the
    venv's site-packages, is in that venv."""
    root = venv_root(tree, "titled")
    site = "/srv/venv/lib/python3.11/site-packages"
    tree.process(
        410,
        root,
        exe="/usr/local/bin/python3.11",
        argv=["gunicorn: master [shop.wsgi:application]"],
        maps=["/usr/local/bin/python3.11", f"{site}/_cffi_backend.cpython-311-x86_64.so"],
    )
    (target,) = discover(tree.procfs(), ON).targets
    assert (target.name, target.venv, target.paths) == ("shop", "/srv/venv", (site,))


def test_kernel_threads_and_zombies_are_skipped(tree: Tree) -> None:
    """kthreadd's children and zombies are neither targets nor counted as problems."""
    root = python_root(tree, "host")
    tree.process(2, root, exe="/x", argv=[], comm="kthreadd")
    tree.process(390, root, exe="/x", argv=[], comm="kworker/0:1", ppid=2)
    tree.process(391, root, exe="/usr/local/bin/python3.11", argv=["python"])
    stat = tree.proc / "391" / "stat"
    stat.write_text(stat.read_text().replace(" S ", " Z ", 1))
    found = discover(tree.procfs(), ON)
    assert found.targets == ()
    assert found.processes == 3
    assert (found.denied, found.gone, found.unreadable) == (0, 0, 0)


# -- naming ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "service"),
    [
        (["/srv/venv/bin/python", "-u", "-X", "dev", "/srv/app/manage.py", "runserver"], "manage"),
        (["python3", "-m", "celery", "-A", "proj", "worker"], "proj"),
        (["python3", "-mhttp.server"], "http.server"),
        (["/v/bin/python", "/v/bin/gunicorn", "-w", "4", "mysite.wsgi:application"], "mysite"),
        (["gunicorn: master [shop.app:create_app()]"], "shop.app"),
        (["/v/bin/python", "/v/bin/uvicorn", "api.main:app", "--port", "8000"], "api.main"),
        (["uwsgi", "--ini", "/etc/uwsgi/billing.ini"], "billing"),
        (["python3", "-c", "print(1)"], None),
        (["python3"], None),
        (["python3", "/app/pkg/__main__.py"], "pkg"),
    ],
)
def test_the_service_of_a_command_line(argv: list[str], service: str | None) -> None:
    """What a command line runs names the service: module, script, or served application."""
    assert command_service(argv) == service


def test_hostile_names_are_sanitised_and_bounded() -> None:
    """Spaces, slashes, unicode and control characters become _, at most 64 characters."""
    assert sanitize("a b/c\u00e9\n../x") == "a_b_c__.._x"
    assert len(sanitize("x" * 200)) == 64
    assert render_name("{pod}", NameFields(exe_base="python3.11")) == "python3.11"
    assert render_name("{service}", NameFields(service="/ /")) == "python"
    assert venv_name("/srv/shop/.venv") == "shop"
    assert venv_name("/opt/billing") == "billing"


def test_suffixes_stay_within_64_characters_and_follow_age() -> None:
    """Collisions: the oldest keeps the name, the others get -2, -3 within 64 characters."""
    long = "n" * 64
    names = assign_names(
        [("b", long, (2.0, "b")), ("a", long, (1.0, "a")), ("c", long, (3.0, "c"))], {}
    )
    assert names == {"a": long, "b": long[:62] + "-2", "c": long[:62] + "-3"}
    kept = assign_names([("b", long, (2.0, "b")), ("d", long, (0.5, "d"))], {"b": long[:62] + "-2"})
    assert kept == {"b": long[:62] + "-2", "d": long}


# -- config ------------------------------------------------------------------------------


def test_targets_discover_is_off_by_default_and_validated() -> None:
    """Off by default; a bad regex, matcher, template, key or procfs is a ConfigError naming it."""
    assert config_from_mapping({}).targets.discover == DiscoverConfig(processes=False)
    good = config_from_mapping(
        {"targets": {"discover": {"processes": True, "include": [{"exe": "python3"}]}}}
    )
    assert good.targets.discover.include == (ProcessMatcherConfig(exe="python3"),)
    for bad, where in [
        ({"include": [{"exe": "("}]}, "targets.discover.include: [0].exe"),
        ({"exclude": [{}]}, "targets.discover.exclude: [0]"),
        ({"name": "{pid}"}, "targets.discover.name: unknown field {pid}"),
        ({"name": "{service:>9}"}, "targets.discover.name"),
        ({"procfs": "proc"}, "targets.discover.procfs"),
        ({"matchers": []}, "targets.discover.matchers: unknown key"),
    ]:
        with pytest.raises(ConfigError) as raised:
            config_from_mapping({"targets": {"discover": bad}})
        assert where in str(raised.value), raised.value


def test_this_interpreter_layout_is_what_the_tests_assume() -> None:
    """The venv tests compare with site-packages under lib/pythonX.Y (this platform's purelib)."""
    assert sysconfig.get_path("purelib", vars={"base": "/b", "platbase": "/b"}).startswith(
        f"/b/lib/python{MINOR}"
    )
