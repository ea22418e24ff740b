"""The Python environment of a running process, read through its root, never by running it.

:func:`resolve_environment` takes what procfs says of a process (its executable, its
arguments, its working directory, two variables of its environment, the files it
maps) and looks at the target's files through a
:class:`~exporter.filesystem.FileSystem` (a
:class:`~exporter.sources.discovery.rootfs.RootFileSystem` over ``/proc/<pid>/root``)
to say which directories its imports come from:

* the virtual environment: the directory holding ``pyvenv.cfg`` next to or above
  ``argv[0]`` (a venv's ``bin/python`` is a link, so ``/proc/<pid>/exe`` names the
  base interpreter, while ``argv[0]`` names the link as the process was started),
  else next to or above the executable itself (a venv made with ``--copies``, a uWSGI
  installed in one), else uWSGI's ``--home``/``--virtualenv``, else ``VIRTUAL_ENV``,
  else the prefix of an extension module it maps from ``<venv>/lib/python*/
  site-packages`` (a process that rewrote its arguments);
* that venv's ``site-packages``, and the base prefix's when ``pyvenv.cfg`` says
  ``include-system-site-packages = true``;
* ``PYTHONPATH`` entries, first, as ``sys.path`` has them;
* without a venv, what the interpreter's prefix has: ``<prefix>/lib/pythonX.Y/
  site-packages``, Debian's ``dist-packages`` (``/usr/local/lib/pythonX.Y/
  dist-packages``, ``/usr/lib/python3/dist-packages``, ``/usr/lib/pythonX.Y/
  dist-packages``), ``lib64`` (Fedora), PyPy's ``lib/pypyX.Y/site-packages``.

``.pth`` path lines are left to the scanner, which reads them in every directory it
scans. The Python version comes from ``pyvenv.cfg`` (``version``, ``version_info``),
from the interpreter's or the mapped ``libpython``'s file name (``python3.11``), from
the prefix's single ``lib/pythonX.Y`` holding ``os.py``, or last from the interpreter
binary read as a file (bounded) for its version string.

Every read is through ``fs`` and bounded; any OSError costs the fact it was for.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from exporter.filesystem import FileSystem, read_regular
from exporter.sources.environments import TargetUnreadable, site_directories

__all__ = [
    "BINARY_SCAN_LIMIT",
    "Evidence",
    "ProcessEnvironment",
    "python_version_from_binary",
    "resolve_environment",
    "system_site_directories",
]

PYVENV_CFG_LIMIT: Final = 64 * 1024
BINARY_SCAN_LIMIT: Final = 64 * 1024 * 1024  # a static python is ~7 MB, libpython ~25 MB
_CHUNK: Final = 1 << 20
_PYTHONPATH_ENTRIES: Final = 64

_NAME_VERSION: Final = re.compile(r"(?:python|pypy)(\d)\.(\d{1,2})")
_LIBPYTHON_VERSION: Final = re.compile(r"libpython(\d)\.(\d{1,2})")
# PY_VERSION as the compiler stores it: "3.11.2\0" between other strings.
_BINARY_VERSION: Final = re.compile(
    rb"\x00(3\.[0-9]{1,2}\.[0-9]{1,2})(?:(?:a|b|rc)[0-9]{1,2})?\+?\x00"
)
_SITE_IN_MAPS: Final = re.compile(
    r"^(?P<prefix>/.*?)/lib(?:64)?/(?:python|pypy)[0-9.]+/site-packages/"
)
_TRUE: Final = frozenset({"true", "yes", "1", "on"})
# uWSGI's options naming the virtual environment (its --home and aliases).
_UWSGI_HOME: Final = frozenset({"-H", "--home", "--virtualenv", "--venv", "--pyhome"})


@dataclass(frozen=True, slots=True)
class Evidence:
    """What procfs says of a process that its environment depends on.

    ``exe``: ``/proc/<pid>/exe`` as the process sees it; ``argv``: its arguments as
    first seen; ``cwd``: its working directory (inside its root); ``virtual_env``,
    ``pythonpath``: those variables of its environment; ``mapped``: paths of files it
    maps (the libpython of an embedding server, extension modules), may be empty.
    """

    exe: str
    argv: tuple[str, ...] = ()
    cwd: str | None = None
    virtual_env: str | None = None
    pythonpath: str | None = None
    mapped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessEnvironment:
    """The directories a process imports from, as it sees them, and its Python.

    ``paths``: ordered, without duplicates (by their real path in the root);
    ``venv``: the virtual environment's root or None; ``pyvenv_cfg``: its
    ``pyvenv.cfg``; ``python_version``: ``"3.11.2"``, ``"3.11"`` or None.
    """

    paths: tuple[str, ...]
    venv: str | None
    pyvenv_cfg: str | None
    python_version: str | None


def resolve_environment(fs: FileSystem, evidence: Evidence) -> ProcessEnvironment:
    """The environment of the process ``evidence`` describes, its files read through ``fs``."""
    venv = _find_venv(fs, evidence)
    front = _pythonpath(fs, evidence.pythonpath, evidence.cwd)
    if venv is not None:
        cfg_path = os.path.join(venv, "pyvenv.cfg")
        cfg = _read_pyvenv_cfg(fs, cfg_path)
        version = _cfg_version(cfg) or _version_from_names(evidence)
        try:
            sites = list(site_directories([venv], fs=fs))
        except TargetUnreadable:
            sites = []
        if cfg.get("include-system-site-packages", "").lower() in _TRUE:
            base = _base_prefix(cfg, evidence.exe)
            minor = _minor(version)
            if base is not None and minor is not None:
                sites += system_site_directories(fs, base, minor, pypy=_is_pypy(evidence.exe))
        return ProcessEnvironment(_unique(fs, [*front, *sites]), venv, cfg_path, version)
    version = _version_from_names(evidence)
    prefix = _prefix_of(evidence.exe)
    if version is None and prefix is not None:
        version = _version_from_prefix(fs, prefix) or python_version_from_binary(fs, evidence.exe)
    minor = _minor(version)
    sites = []
    if prefix is not None and minor is not None:
        sites = system_site_directories(fs, prefix, minor, pypy=_is_pypy(evidence.exe))
    return ProcessEnvironment(_unique(fs, [*front, *sites]), None, None, version)


def system_site_directories(
    fs: FileSystem, prefix: str, minor: str, *, pypy: bool = False
) -> list[str]:
    """The site directories a Python of ``prefix`` and version ``minor`` (``3.11``) has,
    those that exist, in the order its ``site.py`` adds them."""
    candidates = [
        # Debian's site.py: /usr/local first, then the packaged ones.
        f"{prefix}/local/lib/python{minor}/dist-packages",
        f"{prefix}/lib/python3/dist-packages",
        f"{prefix}/lib/python{minor}/dist-packages",
        f"{prefix}/lib/python{minor}/site-packages",
        f"{prefix}/lib64/python{minor}/site-packages",  # Fedora's platlib
    ]
    if prefix == "/usr":  # Fedora adds /usr/local for /usr's Python
        candidates.append(f"/usr/local/lib/python{minor}/site-packages")
    if pypy:
        candidates.insert(0, f"{prefix}/lib/pypy{minor}/site-packages")
        candidates.append(f"{prefix}/site-packages")  # PyPy before 7.3.5
    return [c for c in candidates if fs.is_dir(c)]


def python_version_from_binary(
    fs: FileSystem, path: str, limit: int = BINARY_SCAN_LIMIT
) -> str | None:
    """The ``X.Y.Z`` an interpreter binary (or libpython) holds as its version string.

    Read as a file through ``fs``, in chunks, at most ``limit`` bytes, never run.
    None when it cannot be read or holds no such string.
    """
    try:
        fd = fs.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        tail = b""
        size = 0
        while size < limit:
            chunk = os.read(fd, min(_CHUNK, limit - size))
            if not chunk:
                break
            size += len(chunk)
            match = _BINARY_VERSION.search(tail + chunk)
            if match:
                return match.group(1).decode("ascii")
            tail = chunk[-32:]
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


# -- the venv ------------------------------------------------------------------------


def _find_venv(fs: FileSystem, evidence: Evidence) -> str | None:
    for candidate in _venv_candidates(evidence):
        if _is_venv(fs, candidate):
            return candidate
    for path in evidence.mapped:
        if (match := _SITE_IN_MAPS.match(path)) and _is_venv(fs, match["prefix"]):
            return match["prefix"]
    return None


def _venv_candidates(evidence: Evidence) -> list[str]:
    """Where a ``pyvenv.cfg`` would say the process runs in a venv, most telling first.

    site.py looks for it beside the executable and one level up; the executable
    as started is ``argv[0]``, made absolute against the working directory.
    """
    found: list[str] = []
    argv0 = evidence.argv[0] if evidence.argv else ""
    if "/" in argv0:
        started = os.path.normpath(os.path.join(evidence.cwd or "/", argv0))
        found += [os.path.dirname(started), os.path.dirname(os.path.dirname(started))]
    found += [os.path.dirname(evidence.exe), os.path.dirname(os.path.dirname(evidence.exe))]
    found += _uwsgi_home(evidence.argv)
    # VIRTUAL_ENV says which python PATH found for a process started as "python"; one
    # started by its path runs what that path names, whatever the variable says.
    if "/" not in argv0 and evidence.virtual_env and evidence.virtual_env.startswith("/"):
        found.append(os.path.normpath(evidence.virtual_env))
    return [c for c in dict.fromkeys(found) if c.startswith("/") and c != "/"]


def _uwsgi_home(argv: Sequence[str]) -> list[str]:
    if not argv or "uwsgi" not in os.path.basename(argv[0]).lower():
        return []
    found = []
    for index, arg in enumerate(argv[1:], start=1):
        name, equals, value = arg.partition("=")
        if name in _UWSGI_HOME:
            if equals:
                found.append(value)
            elif index + 1 < len(argv):
                found.append(argv[index + 1])
    return [os.path.normpath(f) for f in found if f.startswith("/")]


def _is_venv(fs: FileSystem, directory: str) -> bool:
    return fs.is_file(os.path.join(directory, "pyvenv.cfg"))


def _read_pyvenv_cfg(fs: FileSystem, path: str) -> dict[str, str]:
    """The ``key = value`` lines of a ``pyvenv.cfg``, keys lowercased; empty when unreadable."""
    try:
        data = read_regular(fs, path, PYVENV_CFG_LIMIT)
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip().lower(), value.strip())
    return values


def _cfg_version(cfg: dict[str, str]) -> str | None:
    raw = cfg.get("version") or cfg.get("version_info") or ""
    parts = []
    for part in raw.split(".")[:3]:
        if not part.isdigit():
            break
        parts.append(part)
    return ".".join(parts) if len(parts) >= 2 else None


def _base_prefix(cfg: dict[str, str], exe: str) -> str | None:
    """The base interpreter's prefix: virtualenv's ``base-prefix``, else ``home``'s parent
    (``home`` is the directory of the base executable), else the running executable's."""
    base = cfg.get("base-prefix")
    if base and base.startswith("/"):
        return os.path.normpath(base)
    home = cfg.get("home")
    if home and home.startswith("/"):
        return os.path.dirname(os.path.normpath(home)) or "/"
    return _prefix_of(exe)


# -- the interpreter -----------------------------------------------------------------


def _prefix_of(exe: str) -> str | None:
    """``/usr`` for ``/usr/bin/python3.11``: the directory above the executable's ``bin``."""
    directory = os.path.dirname(exe)
    if os.path.basename(directory) != "bin":
        return None
    return os.path.dirname(directory) or "/"


def _version_from_names(evidence: Evidence) -> str | None:
    """``X.Y`` from the interpreter's file name (``python3.11``) or a mapped libpython's."""
    if match := _NAME_VERSION.search(os.path.basename(evidence.exe)):
        return f"{match[1]}.{match[2]}"
    for path in evidence.mapped:
        if match := _LIBPYTHON_VERSION.search(os.path.basename(path)):
            return f"{match[1]}.{match[2]}"
    return None


def _version_from_prefix(fs: FileSystem, prefix: str) -> str | None:
    """``X.Y`` when the prefix's ``lib`` holds exactly one ``pythonX.Y`` with ``os.py``."""
    try:
        names = fs.listdir(os.path.join(prefix, "lib"))
    except OSError:
        return None
    found = {
        f"{match[1]}.{match[2]}"
        for name in names
        if (match := re.fullmatch(r"python(\d)\.(\d{1,2})", name))
        and fs.is_file(os.path.join(prefix, "lib", name, "os.py"))
    }
    return found.pop() if len(found) == 1 else None


def _minor(version: str | None) -> str | None:
    return ".".join(version.split(".")[:2]) if version else None


def _is_pypy(exe: str) -> bool:
    return os.path.basename(exe).startswith("pypy")


# -- paths ---------------------------------------------------------------------------


def _pythonpath(fs: FileSystem, value: str | None, cwd: str | None) -> list[str]:
    """The existing directories of ``PYTHONPATH``, relative ones taken from ``cwd``."""
    if not value:
        return []
    found = []
    for entry in value.split(":")[:_PYTHONPATH_ENTRIES]:
        if not entry:
            continue
        if not entry.startswith("/"):
            if cwd is None:
                continue
            entry = os.path.join(cwd, entry)
        entry = os.path.normpath(entry)
        if fs.is_dir(entry):
            found.append(entry)
    return found


def _unique(fs: FileSystem, paths: Sequence[str]) -> tuple[str, ...]:
    """``paths`` in order, each real directory once (``lib64`` is often a link to ``lib``)."""
    seen: set[str] = set()
    kept = []
    for path in paths:
        try:
            real = fs.realpath(path)
        except OSError:
            continue
        if real not in seen:
            seen.add(real)
            kept.append(path)
    return tuple(kept)
