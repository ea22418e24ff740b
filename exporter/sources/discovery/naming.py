"""Names of discovered targets: the template, the service a command line runs, uniqueness.

The default template, ``{service}``, gives the same name to the same service on every
node, so that drift rules compare replicas: the Kubernetes ``namespace.container``
when known, else the systemd unit without ``.service``, else what the command line
runs (``-m module``, a script's name without ``.py``, the application a gunicorn,
uvicorn, hypercorn, daphne, waitress, granian, celery or uWSGI serves), else the
venv directory's name, else the interpreter's file name. Never a pid nor a
container id: either would make a new series with every restart (process-exporter's
README warns of the same).

A rendered name is made to match ``[A-Za-z0-9_.-]{1,64}``; names that collide on one
node are made unique by :func:`assign_names`, stably from one refresh to the next.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Final, TypeVar

__all__ = [
    "NAME_LIMIT",
    "NameFields",
    "assign_names",
    "command_service",
    "render_name",
    "sanitize",
    "service_of",
    "venv_name",
]

NAME_LIMIT: Final = 64
_FALLBACK: Final = "python"
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")
# Servers whose application, not their own name, says which service runs.
_APP_SERVERS: Final = frozenset(
    {"gunicorn", "uvicorn", "hypercorn", "daphne", "waitress-serve", "granian", "celery", "uwsgi"}
)
_GENERIC_VENVS: Final = frozenset({".venv", "venv", "env", ".env", "virtualenv", ".virtualenv"})
_PYTHON_OPTIONS_WITH_VALUE: Final = frozenset({"-W", "-X", "--check-hash-based-pycs"})
# gunicorn with setproctitle: "gunicorn: master [app:application]", "gunicorn: worker [...]".
_GUNICORN_TITLE: Final = re.compile(r"gunicorn: (?:master|worker) \[(?P<app>[^\]]+)\]")
_APP_SPEC: Final = re.compile(r"[A-Za-z_][\w.]*:[\w.]+(?:\(.*\))?")
_MODULE: Final = re.compile(r"[A-Za-z_][\w.]*")
_UWSGI_MODULE: Final = frozenset({"--module", "-w", "--wsgi", "--callable-module"})
_UWSGI_FILE: Final = frozenset({"--wsgi-file", "--file"})
_UWSGI_CONFIG: Final = frozenset({"--ini", "--yaml", "--yml", "--json", "--xml", "--config"})
_CELERY_APP: Final = frozenset({"-A", "--app"})


@dataclass(frozen=True, slots=True)
class NameFields:
    """The fields of a name template; an empty string where not known."""

    service: str = ""
    exe_base: str = ""
    unit: str = ""
    container: str = ""
    pod: str = ""
    namespace: str = ""
    container_id: str = ""
    venv: str = ""

    def as_dict(self) -> dict[str, str]:
        """The fields by name, for ``str.format_map``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def service_of(
    *,
    namespace: str | None,
    container: str | None,
    unit: str | None,
    argv: Sequence[str],
    venv: str | None,
    exe: str,
) -> str:
    """The ``{service}`` of a target: equal for the same service on every node."""
    if namespace and container:
        return f"{namespace}.{container}"
    if unit and unit.endswith(".service"):
        return unit.removesuffix(".service")
    return command_service(argv) or venv_name(venv) or os.path.basename(exe) or _FALLBACK


def render_name(template: str, fields: NameFields) -> str:
    """``template`` filled in with ``fields``, sanitised; the interpreter's name if empty."""
    name = sanitize(template.format_map(fields.as_dict()))
    if name.strip("_.-"):
        return name
    return sanitize(fields.exe_base) or _FALLBACK


def sanitize(text: str) -> str:
    """``text`` with each character outside ``[A-Za-z0-9_.-]`` made ``_``, at most 64 long."""
    return _UNSAFE.sub("_", text)[:NAME_LIMIT]


def venv_name(venv: str | None) -> str | None:
    """The venv directory's name, or its parent's when that name says nothing (``.venv``)."""
    if not venv:
        return None
    venv = venv.rstrip("/")
    base = os.path.basename(venv)
    if base in _GENERIC_VENVS:
        parent = os.path.basename(os.path.dirname(venv))
        return parent or base
    return base or None


def command_service(argv: Sequence[str]) -> str | None:
    """What a command line runs: ``-m``'s module, a script's name, a served application.

    None for ``-c``, stdin, an interpreter alone, or nothing to go by.
    """
    if len(argv) == 1 and " " in argv[0]:  # rewritten by setproctitle
        if match := _GUNICORN_TITLE.match(argv[0]):
            return _app_module(match["app"])
        argv = argv[0].split()
    if not argv:
        return None
    program = os.path.basename(argv[0])
    rest = list(argv[1:])
    if program.startswith(("python", "pypy")):
        found = _python_target(rest)
        if found is None:
            return None
        program, rest = found
    program = program.removesuffix(".py")
    if program in _APP_SERVERS:
        return _served_app(program, rest) or program
    return program or None


def _python_target(args: list[str]) -> tuple[str, list[str]] | None:
    """(module or script name, its arguments) of an interpreter's arguments, or None."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "-m":
            return (args[index + 1], args[index + 2 :]) if index + 1 < len(args) else None
        if arg.startswith("-m"):
            return arg[2:], args[index + 1 :]
        if arg.startswith("-c") or arg == "-":
            return None
        if arg in _PYTHON_OPTIONS_WITH_VALUE:
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        name = os.path.basename(arg.rstrip("/"))
        if name in ("__main__.py", "__main__.pyc"):
            name = os.path.basename(os.path.dirname(arg))
        return name, args[index + 1 :]
    return None


def _served_app(server: str, args: list[str]) -> str | None:
    """The application a server's arguments name (its module), or None."""
    if server == "uwsgi":
        return _option(args, _UWSGI_MODULE, _app_module) or _option(
            args, _UWSGI_FILE | _UWSGI_CONFIG, _file_stem
        )
    if server == "celery":
        return _option(args, _CELERY_APP, _app_module)
    for arg in args:
        if _APP_SPEC.fullmatch(arg):
            return _app_module(arg)
    return None


def _option(
    args: list[str], names: frozenset[str], convert: Callable[[str], str | None]
) -> str | None:
    for index, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if name in names:
            if not equals:
                if index + 1 >= len(args):
                    return None
                value = args[index + 1]
            return convert(value)
        if len(arg) > 2 and arg[:2] in names:  # -Aproj, -wapp:app
            return convert(arg[2:])
    return None


def _app_module(spec: str) -> str | None:
    """``mysite`` for ``mysite.wsgi:application``, ``app`` for ``app:app``."""
    module = spec.partition(":")[0]
    if not _MODULE.fullmatch(module):
        return None
    parts = module.split(".")
    if len(parts) > 1 and parts[-1] in ("wsgi", "asgi"):
        parts.pop()
    return ".".join(parts)


def _file_stem(path: str) -> str | None:
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem or None


K = TypeVar("K", bound=Hashable)


def assign_names(
    wanted: Sequence[tuple[K, str, tuple[float, str]]],
    previous: Mapping[K, str],
) -> dict[K, str]:
    """Unique names for ``wanted`` (key, name, order) groups on one node.

    A key named before keeps its name (names stay while their processes live); the
    others, oldest first (``order``: its oldest start time, then something stable),
    take their name, or ``name-2``, ``name-3``... when it is taken.
    """
    names: dict[K, str] = {}
    taken: set[str] = set()
    fresh = []
    for key, name, order in wanted:
        kept = previous.get(key)
        if kept is not None and kept not in taken:
            names[key] = kept
            taken.add(kept)
        else:
            fresh.append((order, key, name))
    fresh.sort(key=lambda item: item[0])
    for _, key, name in fresh:
        unique = name
        number = 2
        while unique in taken:
            suffix = f"-{number}"
            unique = name[: NAME_LIMIT - len(suffix)] + suffix
            number += 1
        names[key] = unique
        taken.add(unique)
    return names
