"""An immutable snapshot of every fact, and the function that takes one.

A snapshot is replaced whole on each refresh and never mutated; renderers and
handlers read it without locks.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import operator
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, Literal

from exporter import __version__
from exporter.advisories.database import (
    EMPTY_DATABASE,
    STALE_AFTER_DAYS,
    AdvisoryDatabase,
    load_advisories,
)
from exporter.advisories.matching import Finding, match_vulnerabilities
from exporter.collectors.commit import Commit, collect_commit
from exporter.collectors.end_of_life import python_end_of_life
from exporter.collectors.installed import InstalledScan, Skipped, canonical_name, scan_installed
from exporter.collectors.loaded import collect_loaded
from exporter.collectors.modules import ModuleFilter
from exporter.collectors.packages import PackageInfo, loaded_packages
from exporter.collectors.platform import PlatformInfo, collect_platform
from exporter.collectors.python import (
    PythonInfo,
    collect_environment_python,
    collect_python,
    find_environment_config,
)
from exporter.config import Config, ModulePublish, RedactConfig
from exporter.filesystem import HOST, FileSystem

UNKNOWN_VERSION = "unknown"
REDACTED = "<redacted>"
EMPTY: Mapping[str, str] = MappingProxyType({})
EMPTY_PACKAGES: Mapping[str, PackageInfo] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Identity:
    """Facts fixed for the life of the process."""

    server_id: str
    started_at: float
    exporter_version: str = __version__

    @classmethod
    def new(cls, clock: Callable[[], float] = time.time) -> Identity:
        """A fresh identity: a random UUID4 and the current time."""
        return cls(server_id=str(uuid.uuid4()), started_at=clock())


@dataclass(frozen=True, slots=True)
class Sources:
    """Where facts come from; the defaults are this process, tests inject their own."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    uname: Callable[[], Any] = platform.uname
    sys_path: Callable[[], Sequence[str]] = lambda: list(sys.path)
    sys_modules: Callable[[], Mapping[str, ModuleType | None]] = lambda: sys.modules
    clock: Callable[[], float] = time.time
    perf_counter: Callable[[], float] = time.perf_counter
    # How an advisory database is read: None in this thread; the daemon uses a child process.
    load_advisories: Callable[[Sequence[str]], AdvisoryDatabase] | None = None


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    """What a discovered target's running processes add to its environment's facts.

    ``changed`` lists (module, version or None, change) for distributions changed after
    the oldest process started, change one of "installed", "upgraded", "reinstalled",
    "removed", or "changed" (seen newer than the processes at first look, when no earlier
    module list tells which); ``stale`` (path, "deleted" |
    "replaced") the files the processes map that are no longer on disk as mapped;
    ``loaded`` the modules with findings whose native files the processes map.
    """

    processes: int
    started_at: float  # the oldest process's start, Unix time
    changed: tuple[tuple[str, str | None, str], ...] = ()
    stale: tuple[tuple[str, str], ...] = ()
    loaded: frozenset[str] = frozenset()

    @property
    def restart_required(self) -> bool:
        """Whether the processes run code that changed on disk since they started."""
        return bool(self.changed or self.stale)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every fact the exporter publishes, plus when and how it was gathered."""

    identity: Identity
    api_version: int
    app_version: str
    commit: Commit
    platform: PlatformInfo
    python: PythonInfo
    modules: Mapping[str, str]
    skipped: tuple[Skipped, ...]
    refresh_interval_seconds: float
    taken_at: float
    installed_scan: InstalledScan | None = None
    redaction: RedactConfig = field(default_factory=RedactConfig)
    modules_dropped: int = 0
    # Found but not published (modules.include/exclude, modules.max): a module that leaves
    # the published set but is named here was excluded, not uninstalled.
    unpublished: frozenset[str] = frozenset()
    # include, exclude, max, app and publish: what chose the modules and the application
    # version (a change of any of them takes the modules again)
    module_selection: tuple[object, ...] = ()
    # modules.publish: which modules get a module_info series (a target's own setting,
    # on its TargetSpec, wins)
    module_publish: ModulePublish = "all"
    python_end_of_life: datetime.date | None = None
    # None when no advisory database is configured, or none has loaded yet: "not checked",
    # not "none found" (advisories.last_error then says why).
    vulnerabilities: tuple[Finding, ...] | None = None
    advisories: AdvisoryDatabase = EMPTY_DATABASE
    advisories_ignore: tuple[str, ...] = ()
    advisory_paths: tuple[str, ...] = ()
    # For the SBOM: name as written and licence of each installed distribution.
    packages: Mapping[str, PackageInfo] = field(default_factory=lambda: EMPTY_PACKAGES)
    app_distribution: str | None = None
    module_source: Literal["installed", "loaded"] = "installed"
    # A discovered process target's processes: None for every other environment.
    process: ProcessFacts | None = None

    def facts(self) -> tuple[Any, ...]:
        """Everything this snapshot publishes, timings and identity aside: equal facts, equal
        bodies. Renderers keep it to tell whether a new snapshot needs rendering again."""
        return (*self.environment_facts(), self.process)

    def environment_facts(self) -> tuple[Any, ...]:
        """The facts of the environment alone, without what its processes add (how many
        run, what changed under them): what an SBOM describes."""
        return (
            self.api_version,
            self.app_version,
            self.app_distribution,
            self.commit.value,
            self.platform,
            self.python,
            self.python_end_of_life,
            self.refresh_interval_seconds,
            self.redaction,
            self.module_publish,
            self.module_source,
            self.modules,
            self.packages,
            self.vulnerabilities,
        )

    def same_facts(self, other: Snapshot) -> bool:
        """Whether ``other`` publishes the same facts (timings and identity aside)."""
        return self.facts() == other.facts()

    @property
    def advisories_problem(self) -> str | None:
        """Why the findings cannot be trusted as they stand: no database could be loaded
        (there are no findings then), or the latest load failed (the previous database is
        in force). None when no database is configured or the latest load succeeded."""
        if not self.advisory_paths:
            return None
        db = self.advisories
        if not db.loaded:
            return f"advisories not loaded: {db.last_error or 'not loaded yet'}"
        if db.last_error is not None:
            return f"advisories not reloaded: {db.last_error}"
        return None

    @property
    def advisories_stale(self) -> bool:
        """Whether the newest advisory in force is older than STALE_AFTER_DAYS at this
        snapshot's time (or none carries a date); False while none is loaded."""
        db = self.advisories
        if not db.loaded:
            return False
        if db.newest_modified is None:
            return True
        return self.taken_at - db.newest_modified > STALE_AFTER_DAYS * 86400

    @property
    def published_platform(self) -> PlatformInfo:
        """The platform facts as published: the host name redacted when configured."""
        if self.redaction.hostname:
            return dataclasses.replace(self.platform, node=REDACTED)
        return self.platform

    def published_modules(self, output: Literal["json", "metrics"]) -> Mapping[str, str]:
        """The modules as published to ``output``: none when redacted from it."""
        return EMPTY if self.redaction.modules_hidden_from(output) else self.modules

    def published_vulnerabilities(
        self, output: Literal["json", "metrics"]
    ) -> tuple[Finding, ...] | None:
        """The findings as published to ``output``: none when the modules are redacted from it.

        None when no advisory database is configured.
        """
        if self.vulnerabilities is None:
            return None
        return () if self.redaction.modules_hidden_from(output) else self.vulnerabilities


def take_snapshot(
    config: Config,
    identity: Identity,
    previous: Snapshot | None = None,
    sources: Sources | None = None,
    *,
    advisories: AdvisoryDatabase | None = None,
    host_platform: PlatformInfo | None = None,
    python: PythonInfo | None = None,
    fs: FileSystem = HOST,
) -> Snapshot:
    """Gather every fact now; ``previous`` lets unchanged directories be skipped.

    ``advisories``, ``host_platform`` and ``python``, when given, are used as they are: a
    host loads its advisory database and reads its platform once for all of its targets,
    and finds each target's Python itself. Every file of the environment (its
    directories, the commit's file and git directory) is read through ``fs``: a
    discovered process's root, or the host's own.
    """
    sources = sources or Sources()
    scan: InstalledScan | None = None
    packages: Mapping[str, PackageInfo] = EMPTY_PACKAGES
    selection = (
        config.modules.include,
        config.modules.exclude,
        config.modules.max,
        config.app,
        config.modules.publish,
    )
    if config.modules.source == "installed":
        paths = config.modules.paths or sources.sys_path()
        scan = scan_installed(
            paths, previous.installed_scan if previous else None, clock=sources.clock, fs=fs
        )
        if (
            previous is not None
            and previous.module_selection == selection
            and _reused(scan, previous.installed_scan)
        ):
            # Every directory unchanged, the same selection: the same modules. This is what
            # makes an unchanged target cost its stats and little else.
            return _refreshed(previous, config, identity, scan, sources, advisories, python, fs)
        winners = scan.winners()
        found, skipped = {name: d.version for name, d in winners.items()}, scan.skipped()
        packages = MappingProxyType(
            {name: d.info for name, d in winners.items() if d.info is not None}
        )
    else:
        found, skipped = collect_loaded(sources.sys_modules())
    modules = ModuleFilter(config.modules.include, config.modules.exclude).apply(found)
    dropped = max(0, len(modules) - config.modules.max)
    if dropped:
        modules = dict(itertools.islice(modules.items(), config.modules.max))
    if config.modules.source == "loaded":
        unchanged = previous is not None and previous.modules == modules
        packages = previous.packages if previous and unchanged else loaded_packages(modules)
    python = python or _python_of(config)
    database, vulnerabilities = _check_advisories(config, modules, previous, sources, advisories)
    commit = _commit(config, sources, fs)
    return Snapshot(
        identity=identity,
        api_version=config.app.api_version,
        app_version=_app_version(config, found),
        commit=commit,
        platform=host_platform or collect_platform(sources.uname),
        python=python,
        modules=MappingProxyType(modules),
        skipped=skipped,
        refresh_interval_seconds=config.refresh.interval_seconds,
        taken_at=sources.clock(),
        installed_scan=scan,
        redaction=config.redact,
        modules_dropped=dropped,
        unpublished=frozenset(found.keys() - modules.keys()),
        module_selection=selection,
        module_publish=config.modules.publish,
        python_end_of_life=python_end_of_life(python, config.python.end_of_life),
        vulnerabilities=vulnerabilities,
        advisories=database,
        advisories_ignore=config.advisories.ignore,
        advisory_paths=config.advisories.paths,
        packages=packages,
        app_distribution=config.app.distribution,
        module_source=config.modules.source,
    )


def _reused(scan: InstalledScan, earlier: InstalledScan | None) -> bool:
    """Whether ``scan`` is ``earlier``'s directories, every one reused as it was."""
    return (
        earlier is not None
        and scan.directories_read == 0
        and len(scan.directories) == len(earlier.directories)
        and all(a is b for a, b in zip(scan.directories, earlier.directories, strict=True))
    )


def _refreshed(
    previous: Snapshot,
    config: Config,
    identity: Identity,
    scan: InstalledScan,
    sources: Sources,
    advisories: AdvisoryDatabase | None,
    python: PythonInfo | None,
    fs: FileSystem,
) -> Snapshot:
    """``previous`` with what may change without a directory changing gathered again:
    the commit, the Python, the advisory database and findings, the time. The application
    version is the previous one: it comes from the modules and ``config.app``, both the same."""
    python = python or _python_of(config)
    database, vulnerabilities = _check_advisories(
        config, previous.modules, previous, sources, advisories
    )
    # dataclasses.replace, without its walk over every field on every call (an unchanged
    # target costs this call; the fields kept are listed once, below the function).
    return Snapshot(
        **dict(zip(_KEPT_ON_REFRESH, _kept_on_refresh(previous), strict=True)),
        identity=identity,
        api_version=config.app.api_version,
        commit=_commit(config, sources, fs),
        python=python,
        refresh_interval_seconds=config.refresh.interval_seconds,
        taken_at=sources.clock(),
        installed_scan=scan,
        redaction=config.redact,
        python_end_of_life=python_end_of_life(python, config.python.end_of_life),
        vulnerabilities=vulnerabilities,
        advisories=database,
        advisories_ignore=config.advisories.ignore,
        advisory_paths=config.advisories.paths,
        app_distribution=config.app.distribution,
    )


_REFRESHED_FIELDS = frozenset(
    {
        "identity",
        "api_version",
        "commit",
        "python",
        "refresh_interval_seconds",
        "taken_at",
        "installed_scan",
        "redaction",
        "python_end_of_life",
        "vulnerabilities",
        "advisories",
        "advisories_ignore",
        "advisory_paths",
        "app_distribution",
    }
)
# Every other field of Snapshot, fields added later included: _refreshed keeps them as they were.
_KEPT_ON_REFRESH = tuple(
    f.name for f in dataclasses.fields(Snapshot) if f.init and f.name not in _REFRESHED_FIELDS
)
_kept_on_refresh = operator.attrgetter(*_KEPT_ON_REFRESH)


def _commit(config: Config, sources: Sources, fs: FileSystem) -> Commit:
    return collect_commit(
        value=config.commit.value,
        env_names=config.commit.env,
        environ=sources.environ,
        file=config.commit.file,
        git_dir=config.commit.git_dir,
        fs=fs,
    )


def _check_advisories(
    config: Config,
    modules: Mapping[str, str],
    previous: Snapshot | None,
    sources: Sources,
    loaded: AdvisoryDatabase | None = None,
) -> tuple[AdvisoryDatabase, tuple[Finding, ...] | None]:
    """The database in force and the findings; both reused when nothing they depend on changed.

    No findings (None, not an empty tuple) while no database has loaded: a failed first
    load checked nothing.
    """
    if not config.advisories.paths:
        return EMPTY_DATABASE, None
    database = loaded or load_advisories(
        config.advisories.paths,
        previous.advisories if previous else None,
        clock=sources.clock,
        perf_counter=sources.perf_counter,
        load=sources.load_advisories,
    )
    if not database.loaded:
        return database, None
    if (
        previous is not None
        and previous.vulnerabilities is not None
        and database.by_package is previous.advisories.by_package  # a failed load shares it
        and config.advisories.ignore == previous.advisories_ignore
        and modules == previous.modules
    ):
        return database, previous.vulnerabilities
    return database, match_vulnerabilities(modules, database, config.advisories.ignore)


def _python_of(config: Config) -> PythonInfo:
    """The Python of the inspected environment: another venv's when modules.paths lie in one."""
    if config.modules.source == "installed" and config.modules.paths:
        pyvenv_cfg = find_environment_config(config.modules.paths)
        if pyvenv_cfg is not None:
            other = collect_environment_python(pyvenv_cfg)
            if other is not None:
                return other
    return collect_python()


def _app_version(config: Config, found: Mapping[str, str]) -> str:
    if config.app.version:
        return config.app.version
    name = config.app.distribution
    if not name:
        return UNKNOWN_VERSION
    if canonical_name(name) in found:
        return found[canonical_name(name)]
    if config.modules.paths:  # another environment: this process's metadata says nothing of it
        return UNKNOWN_VERSION
    import importlib.metadata  # the fallback alone needs it; it costs 5 ms of start-up

    try:
        return importlib.metadata.version(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return UNKNOWN_VERSION
