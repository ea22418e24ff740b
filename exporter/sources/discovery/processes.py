"""Python processes found in procfs, grouped into targets: one per environment per container.

:func:`discover` lists the processes of a :class:`~exporter.sources.discovery.procfs.ProcFS`,
finds the Python ones (a ``python*``/``pypy*`` executable, or a process that maps a
``libpython*.so``: uWSGI, mod_wsgi), keeps those the include/exclude matchers let
through, and groups the processes that share one environment in one root and one
container or unit into a :class:`ProcessTarget`: a gunicorn master and its eight
workers are one target of nine processes.

A process is (pid, ``starttime``): pids are reused. What does not change while a
process lives (its executable, its command line as first seen, the few variables of
its environment that matter, its cgroup, its root, its environment's directories) is
read once, at first sight, and kept in the returned :class:`Discovery` for the next
call: a host where nothing changed costs a listing and one ``stat`` read per pid.
An ``exec`` keeps the pid and ``starttime`` but renames the process (``comm``, in
that same ``stat`` line): a process whose ``comm`` changed has its executable read
again, and is examined anew when that changed too. The command line is never read
again (gunicorn's workers rewrite theirs with setproctitle).

Nothing of a process is run. Its files are read through its root with
:class:`~exporter.sources.discovery.rootfs.RootFileSystem`; of its environment only
``VIRTUAL_ENV``, ``PYTHONPATH`` and the ``commit_env`` names are read, and only the
latter's values are kept (in :attr:`ProcessTarget.commit_env`). Kernel threads,
zombies and processes that exit while read are skipped (the latter counted in
:attr:`Discovery.gone`); one this process may not read (another user's, without
``CAP_SYS_PTRACE``) is counted in :attr:`Discovery.denied`, its pid listed in
:attr:`Discovery.denied_pids`, never an error.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from exporter.config import DiscoverConfig, ProcessMatcherConfig
from exporter.sources.discovery.cgroup import (
    CgroupIdentity,
    PodInfo,
    identity_of,
    kubelet_container_logs,
)
from exporter.sources.discovery.environment import (
    Evidence,
    ProcessEnvironment,
    resolve_environment,
)
from exporter.sources.discovery.naming import (
    NameFields,
    assign_names,
    render_name,
    service_of,
    venv_name,
)
from exporter.sources.discovery.procfs import (
    ProcError,
    ProcessDenied,
    ProcessGone,
    ProcFS,
    ProcStat,
)
from exporter.sources.discovery.rootfs import RootFileSystem

__all__ = [
    "KIND_PROCESS",
    "LABELS",
    "SETTLE_SECONDS",
    "Discovery",
    "ProcessTarget",
    "TargetKey",
    "discover",
    "is_python_executable",
]

log = logging.getLogger(__name__)

KIND_PROCESS: Final = "process"
# The identity labels of a target, in this order, each only where known.
LABELS: Final = ("unit", "container_id", "pod_uid", "namespace", "pod", "container", "exe")
# A process younger than this when first seen, neither a python executable nor mapping
# libpython, is looked at again: an embedding server loads libpython after it starts.
SETTLE_SECONDS: Final = 5.0

_ENV_NAMES: Final = ("VIRTUAL_ENV", "PYTHONPATH")
_KTHREADD: Final = 2  # the kernel threads' parent: neither it nor its children run files
_DEAD_STATES: Final = frozenset({"Z", "X", "x"})
_LIBPYTHON: Final = re.compile(r"libpython\d[\d.]*[a-z]*\.so")
_GONE_ERRNOS: Final = frozenset({errno.ENOENT, errno.ESRCH})
_DENIED_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM})

# (root st_dev, root st_ino, container id, unit, site directories, executable when
# there are no directories): processes sharing it are one target.
TargetKey = tuple[int, int, str, str, tuple[str, ...], str]


@dataclass(frozen=True, slots=True)
class ProcessTarget:
    """One group of Python processes sharing an environment in one root and container or unit.

    ``pid`` is the oldest member's, ``root`` its ``<procfs>/<pid>/root`` (read the
    target's files through a RootFileSystem over it); ``paths``, ``pyvenv_cfg``,
    ``cwd``, ``executable`` are as the target sees them, inside that root.
    ``processes``: (pid, start time as Unix time), sorted by pid. ``labels``: the
    known ones of :data:`LABELS`, in that order. ``commit_env``: the configured
    ``commit.env`` names found in the oldest process's environment, with their values.
    """

    name: str
    key: TargetKey
    pid: int
    root: str
    paths: tuple[str, ...]
    pyvenv_cfg: str | None
    python_version: str | None
    executable: str
    processes: tuple[tuple[int, float], ...]
    oldest_start: float
    labels: tuple[tuple[str, str], ...]
    commit_env: tuple[tuple[str, str], ...]
    cwd: str | None
    venv: str | None = None
    kind: str = KIND_PROCESS


@dataclass(frozen=True, slots=True)
class _Facts:
    """What grouping and naming need of one Python process, read at first sight."""

    pid: int
    starttime: int
    start_time: float
    ppid: int
    exe: str
    argv: tuple[str, ...]
    cwd: str | None
    root_id: tuple[int, int]
    cgroup: CgroupIdentity
    environment: ProcessEnvironment
    commit_env: tuple[tuple[str, str], ...]


_OTHER: Final = "other"  # no Python: not cached as Python, nothing more read
_PYTHON: Final = "python"
_EXCLUDED: Final = "excluded"
_DENIED: Final = "denied"
_UNREADABLE: Final = "unreadable"


@dataclass(frozen=True, slots=True)
class _Seen:
    """The verdict on one process, kept while it lives (its ``comm`` tells an exec)."""

    comm: str
    exe: str | None
    verdict: str
    settled: bool = True
    facts: _Facts | None = None


@dataclass(frozen=True, slots=True)
class _State:
    """What one call hands the next: verdicts by process, names by target, pods by container."""

    signature: tuple[object, ...] = ()
    template: str = ""
    seen: Mapping[tuple[int, int], _Seen] = field(default_factory=dict)
    names: Mapping[TargetKey, str] = field(default_factory=dict)
    pods: Mapping[str, PodInfo] = field(default_factory=dict)
    pods_looked_up: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Discovery:
    """What one listing found: the targets, sorted by name, and the counts of the listing.

    ``processes``: pids listed; ``python_processes``: Python processes grouped into
    targets; ``excluded``: Python processes the matchers left out; ``denied``: processes
    this one may not read (``denied_pids`` lists them, ``new_denied`` those first seen
    denied by this call, for a log line); ``gone``: processes that exited while read;
    ``unreadable``: processes whose files did not parse.
    """

    targets: tuple[ProcessTarget, ...] = ()
    processes: int = 0
    python_processes: int = 0
    denied: int = 0
    gone: int = 0
    excluded: int = 0
    unreadable: int = 0
    denied_pids: tuple[int, ...] = ()
    new_denied: tuple[int, ...] = ()
    _state: _State = field(default_factory=_State, repr=False, compare=False)


def is_python_executable(path: str) -> bool:
    """Whether an executable's file name is a Python interpreter's (``python*``, ``pypy*``)."""
    return os.path.basename(path).startswith(("python", "pypy"))


def discover(
    procfs: ProcFS,
    config: DiscoverConfig,
    previous: Discovery | None = None,
    *,
    commit_env: Sequence[str] = (),
    now: float | None = None,
) -> Discovery:
    """List ``procfs``'s processes and group the Python ones into targets.

    ``previous``, the last call's result, lends what it read of the processes still
    running (and the names of their targets). ``commit_env``: the environment
    variables that may hold a commit (top-level ``commit.env``), the only ones whose
    values are kept. ``now`` (Unix time) tells young processes; by default the clock's.
    Raises ProcError only when the process list itself cannot be read.
    """
    now = time.time() if now is None else now
    commit_names = tuple(dict.fromkeys(n for n in commit_env if n not in _ENV_NAMES))
    signature = (procfs.mount, config.include, config.exclude, commit_names)
    earlier = previous._state if previous is not None else _State()
    old_seen = earlier.seen if earlier.signature == signature else {}
    matchers = _Matchers(config.include, config.exclude)
    scan = _Scan(procfs, matchers, commit_names, now)

    pids = procfs.pids()
    seen: dict[tuple[int, int], _Seen] = {}
    for pid in pids:
        try:
            st = procfs.stat(pid)
        except ProcessGone:
            scan.gone += 1
            continue
        except ProcessDenied:
            scan.denied.append(pid)
            continue
        except ProcError:
            scan.unreadable += 1
            continue
        if st.state in _DEAD_STATES or _KTHREADD in (pid, st.ppid):
            continue
        identity = (pid, st.starttime)
        entry = scan.follow(old_seen.get(identity), st)
        if entry is None:
            entry = scan.examine(st)
            if entry is None:
                continue
            if entry.verdict == _DENIED:
                scan.new_denied.append(pid)
        seen[identity] = entry
        if entry.verdict == _DENIED:
            scan.denied.append(pid)
        elif entry.verdict == _EXCLUDED:
            scan.excluded += 1
        elif entry.verdict == _UNREADABLE:
            scan.unreadable += 1

    _inherit(seen, scan.examined)
    groups = _group(seen)
    pods, looked_up = _pods(groups, earlier, config.kubelet_logs)
    template_names = earlier.names if earlier.template == config.name else {}
    targets, names = _targets(procfs, groups, pods, config.name, template_names)
    return Discovery(
        targets=targets,
        processes=len(pids),
        python_processes=sum(len(t.processes) for t in targets),
        denied=len(scan.denied),
        gone=scan.gone,
        excluded=scan.excluded,
        unreadable=scan.unreadable,
        denied_pids=tuple(sorted(scan.denied)),
        new_denied=tuple(sorted(scan.new_denied)),
        _state=_State(signature, config.name, seen, names, pods, looked_up),
    )


class _Matchers:
    """include/exclude, compiled once per call."""

    def __init__(
        self,
        include: Sequence[ProcessMatcherConfig],
        exclude: Sequence[ProcessMatcherConfig],
    ) -> None:
        self.include = [_compile(m) for m in include]
        self.exclude = [_compile(m) for m in exclude]

    def keep(self, exe: str, argv: Sequence[str]) -> bool:
        """Whether a Python process with this executable and command line is reported."""
        line = " ".join(argv)
        if self.include and not any(_matches(m, exe, line) for m in self.include):
            return False
        return not any(_matches(m, exe, line) for m in self.exclude)


_Compiled = tuple["re.Pattern[str] | None", "re.Pattern[str] | None"]


def _compile(matcher: ProcessMatcherConfig) -> _Compiled:
    return (
        None if matcher.exe is None else re.compile(matcher.exe),
        None if matcher.cmdline is None else re.compile(matcher.cmdline),
    )


def _matches(matcher: _Compiled, exe: str, line: str) -> bool:
    exe_re, cmdline_re = matcher
    return (exe_re is None or exe_re.search(exe) is not None) and (
        cmdline_re is None or cmdline_re.search(line) is not None
    )


class _Scan:
    """One call's reading of processes first seen, and its counts."""

    def __init__(
        self, procfs: ProcFS, matchers: _Matchers, commit_names: tuple[str, ...], now: float
    ) -> None:
        self.procfs = procfs
        self.matchers = matchers
        self.names = (*_ENV_NAMES, *commit_names)
        self.now = now
        self.gone = 0
        self.excluded = 0
        self.unreadable = 0
        self.denied: list[int] = []
        self.new_denied: list[int] = []
        self.examined: list[tuple[int, int]] = []
        # Environments resolved by this call, by root and evidence: 9 gunicorn processes
        # resolve theirs once.
        self._environments: dict[tuple[tuple[int, int], Evidence], ProcessEnvironment] = {}

    def follow(self, entry: _Seen | None, st: ProcStat) -> _Seen | None:
        """The kept verdict on a process still running, or None to examine it (again)."""
        if entry is None or not entry.settled:
            return None
        if entry.comm == st.comm:
            return entry
        if entry.verdict == _DENIED:  # its executable is no more readable than before
            return replace(entry, comm=st.comm)
        # Renamed: by prctl/setproctitle (same executable), or by an exec.
        try:
            exe = self.procfs.exe(st.pid)
        except ProcError:
            return None
        if exe is not None and exe.path == entry.exe:
            return replace(entry, comm=st.comm)
        return None

    def examine(self, st: ProcStat) -> _Seen | None:
        """The verdict on a process first seen; None when it exited meanwhile (counted)."""
        try:
            entry = self._examine(st)
        except ProcessGone:
            self.gone += 1
            return None
        except ProcessDenied:
            return _Seen(st.comm, None, _DENIED)
        except (ProcError, ValueError) as exc:
            log.debug("process %d: %s", st.pid, exc)
            return _Seen(st.comm, None, _UNREADABLE)
        if entry.facts is not None:
            self.examined.append((st.pid, st.starttime))
        return entry

    def _examine(self, st: ProcStat) -> _Seen:
        procfs, pid = self.procfs, st.pid
        exe = procfs.exe(pid)
        if exe is None:  # no file runs: a kernel thread (a zombie was skipped)
            return _Seen(st.comm, None, _OTHER)
        mapped: tuple[str, ...] = ()
        if not is_python_executable(exe.path):
            libraries = tuple(
                m.path for m in procfs.maps(pid) if _LIBPYTHON.match(os.path.basename(m.path))
            )
            if not libraries:
                settled = self.now - st.start_time >= SETTLE_SECONDS
                return _Seen(st.comm, exe.path, _OTHER, settled=settled)
            mapped = libraries
        argv = tuple(procfs.cmdline(pid))
        if not self.matchers.keep(exe.path, argv):
            return _Seen(st.comm, exe.path, _EXCLUDED)
        cwd = procfs.cwd(pid)
        environ = procfs.environ(pid, self.names)
        cgroup = identity_of(procfs.cgroup(pid))
        root = procfs.root(pid)
        try:
            root_stat = os.stat(root)
        except OSError as exc:
            raise _proc_error(root, pid, exc) from None
        root_id = (root_stat.st_dev, root_stat.st_ino)
        evidence = Evidence(
            exe=exe.path,
            argv=argv,
            cwd=cwd,
            virtual_env=environ.get("VIRTUAL_ENV"),
            pythonpath=environ.get("PYTHONPATH"),
            mapped=mapped,
        )
        environment = self._environments.get((root_id, evidence))
        if environment is None:
            environment = self._resolve(pid, root, evidence)
            self._environments[(root_id, evidence)] = environment
        commit = tuple((n, environ[n]) for n in self.names[len(_ENV_NAMES) :] if n in environ)
        facts = _Facts(
            pid=pid,
            starttime=st.starttime,
            start_time=st.start_time,
            ppid=st.ppid,
            exe=exe.path,
            argv=argv,
            cwd=cwd,
            root_id=root_id,
            cgroup=cgroup,
            environment=environment,
            commit_env=commit,
        )
        return _Seen(st.comm, exe.path, _PYTHON, facts=facts)

    def _resolve(self, pid: int, root: str, evidence: Evidence) -> ProcessEnvironment:
        """The environment, read through the process's root; its maps when nothing else says."""
        try:
            fs = RootFileSystem(root)
        except OSError as exc:
            raise _proc_error(root, pid, exc) from None
        with fs:
            environment = resolve_environment(fs, evidence)
            if environment.venv is None and not evidence.mapped:
                # A process that rewrote its arguments (setproctitle) may still map an
                # extension module from its venv's site-packages.
                sites = tuple(m.path for m in self.procfs.maps(pid) if "/site-packages/" in m.path)
                if sites:
                    found = resolve_environment(fs, replace(evidence, mapped=sites))
                    if found.venv is not None:
                        environment = found
        return environment


def _proc_error(path: str, pid: int, exc: OSError) -> ProcError:
    reason = exc.strerror or type(exc).__name__
    if exc.errno in _GONE_ERRNOS:
        return ProcessGone(path, reason, pid=pid, errno=exc.errno)
    if exc.errno in _DENIED_ERRNOS:
        return ProcessDenied(path, reason, pid=pid, errno=exc.errno)
    return ProcError(path, reason, pid=pid, errno=exc.errno)


def _inherit(seen: dict[tuple[int, int], _Seen], examined: Collection[tuple[int, int]]) -> None:
    """A process first seen that named no venv of its own (a forked worker whose title
    was rewritten) takes its parent's, when the parent runs the same interpreter in the
    same root and the child was not started by a path of its own (its arguments are the
    parent's, or its argv[0] is no path): a fork without exec imports from where its
    parent does, an exec of ``/usr/bin/python3`` does not."""
    if not examined:
        return
    by_pid = {entry.facts.pid: entry.facts for entry in seen.values() if entry.facts is not None}
    order = sorted(examined, key=lambda identity: identity[1])  # parents before children
    for identity in order:
        entry = seen.get(identity)
        if entry is None or entry.facts is None or entry.facts.environment.venv is not None:
            continue
        facts = entry.facts
        parent = by_pid.get(facts.ppid)
        if (
            parent is not None
            and parent.environment.venv is not None
            and parent.exe == facts.exe
            and parent.root_id == facts.root_id
            and parent.starttime <= facts.starttime
            and (facts.argv == parent.argv or "/" not in (facts.argv or ("",))[0])
        ):
            facts = replace(facts, environment=parent.environment)
            seen[identity] = replace(entry, facts=facts)
            by_pid[facts.pid] = facts


def _key(facts: _Facts) -> TargetKey:
    paths = facts.environment.paths
    return (
        facts.root_id[0],
        facts.root_id[1],
        facts.cgroup.container_id or "",
        facts.cgroup.unit or "",
        paths,
        "" if paths else facts.exe,
    )


def _group(seen: Mapping[tuple[int, int], _Seen]) -> dict[TargetKey, list[_Facts]]:
    groups: dict[TargetKey, list[_Facts]] = {}
    for entry in seen.values():
        if entry.facts is not None:
            groups.setdefault(_key(entry.facts), []).append(entry.facts)
    for members in groups.values():
        members.sort(key=lambda f: (f.starttime, f.pid))  # the oldest first
    return groups


def _pods(
    groups: Mapping[TargetKey, list[_Facts]], earlier: _State, directory: str
) -> tuple[dict[str, PodInfo], frozenset[str]]:
    """Pods by container id; the kubelet's log names are listed (once) only when a
    Kubernetes container is seen for the first time."""
    wanted = {
        f.cgroup.container_id
        for members in groups.values()
        for f in members[:1]
        if f.cgroup.container_id and f.cgroup.pod_uid
    }
    pods = {cid: pod for cid, pod in earlier.pods.items() if cid in wanted}
    new = wanted - earlier.pods_looked_up
    if new:
        try:
            listed = kubelet_container_logs(directory)
        except OSError as exc:
            log.debug("kubelet logs %s: %s", directory, exc)
            listed = {}
        pods.update((cid, listed[cid]) for cid in wanted if cid in listed)
    return pods, frozenset(wanted)


def _targets(
    procfs: ProcFS,
    groups: Mapping[TargetKey, list[_Facts]],
    pods: Mapping[str, PodInfo],
    template: str,
    previous_names: Mapping[TargetKey, str],
) -> tuple[tuple[ProcessTarget, ...], dict[TargetKey, str]]:
    wanted = []
    for key, members in groups.items():
        oldest = members[0]
        fields = _name_fields(oldest, pods)
        wanted.append((key, render_name(template, fields), (oldest.start_time, repr(key))))
    names = assign_names(wanted, previous_names)
    targets = []
    for key, members in groups.items():
        oldest = members[0]
        environment = oldest.environment
        targets.append(
            ProcessTarget(
                name=names[key],
                key=key,
                pid=oldest.pid,
                root=procfs.root(oldest.pid),
                paths=environment.paths,
                pyvenv_cfg=environment.pyvenv_cfg,
                python_version=environment.python_version,
                executable=oldest.exe,
                processes=tuple(sorted((f.pid, f.start_time) for f in members)),
                oldest_start=oldest.start_time,
                labels=_labels(oldest, pods),
                commit_env=oldest.commit_env,
                cwd=oldest.cwd,
                venv=environment.venv,
            )
        )
    targets.sort(key=lambda t: t.name)
    return tuple(targets), names


def _name_fields(facts: _Facts, pods: Mapping[str, PodInfo]) -> NameFields:
    cgroup = facts.cgroup
    pod = pods.get(cgroup.container_id or "")
    venv = venv_name(facts.environment.venv)
    return NameFields(
        service=service_of(
            namespace=pod.namespace if pod else None,
            container=pod.container if pod else None,
            unit=cgroup.unit,
            argv=facts.argv,
            venv=facts.environment.venv,
            exe=facts.exe,
        ),
        exe_base=os.path.basename(facts.exe),
        unit=cgroup.unit or "",
        container=pod.container if pod else "",
        pod=pod.pod if pod else "",
        namespace=pod.namespace if pod else "",
        container_id=cgroup.container_id or "",
        venv=venv or "",
    )


def _labels(facts: _Facts, pods: Mapping[str, PodInfo]) -> tuple[tuple[str, str], ...]:
    cgroup = facts.cgroup
    pod = pods.get(cgroup.container_id or "")
    values = {
        "unit": cgroup.unit,
        "container_id": cgroup.container_id,
        "pod_uid": cgroup.pod_uid,
        "namespace": pod.namespace if pod else None,
        "pod": pod.pod if pod else None,
        "container": pod.container if pod else None,
        "exe": facts.exe,
    }
    return tuple((label, value) for label in LABELS if (value := values[label]))
