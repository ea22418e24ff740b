"""Typed, frozen settings and the loader that validates ``config.yaml``.

``load_config(path)`` returns a :class:`Config` or raises :class:`ConfigError`
listing every problem found, each naming the file, the dotted key and what is
wrong. The schema is the dataclasses below: a field's type says what YAML value
it accepts, and an optional ``check`` in its metadata adds a rule of its own.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Union

import yaml

DEFAULT_PORT = 8393
DEFAULT_LISTEN_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` holds one line per fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A parsed ``host:port``; an empty host means every interface."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen_address(text: str) -> ListenAddress:
    """Parse ``host:port``, ``[v6]:port`` or ``:port``; raise ValueError on anything else."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        hint = f" ({_port_hint(int(text))})" if _is_port(text) else ""
        raise ValueError(f"{text!r} is not host:port{hint}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, as [::1]:{port_text}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    if any(c.isspace() for c in host):
        raise ValueError(f"{text!r}: the host contains white space")
    return ListenAddress(host=host, port=int(port_text))


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 <= int(text) <= 65535


def _port_hint(port: int) -> str:
    """What to write for a bare port: every interface, or this host only as by default."""
    return (
        f"for port {port} write ':{port}' to listen on every interface,"
        f" or '127.0.0.1:{port}' for this host only"
    )


def _listen_address_type(value: object) -> str:
    """What is wrong with a listen address that is no string: a bare port says what to write.

    Quoting, the generic advice, would not help: a quoted port is no host:port either.
    """
    problem = f"expected a string host:port, got {_describe(value)}"
    if isinstance(value, int) and not isinstance(value, bool) and _is_port(str(value)):
        return f"{problem} ({_port_hint(value)})"
    return problem


def _check_listen_address(value: str) -> str | None:
    try:
        parse_listen_address(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value}"


def _check_at_least_one(value: int) -> str | None:
    return None if value >= 1 else f"must be 1 or more, got {value}"


def _check_paths(values: tuple[str, ...]) -> str | None:
    bad = [v for v in values if not v.startswith("/")]
    return f"paths must start with '/': {', '.join(bad)}" if bad else None


def _check_not_blank(values: tuple[str, ...]) -> str | None:
    return "entries must not be empty" if any(not v.strip() for v in values) else None


def _rule(
    check: Callable[[Any], str | None],
    wrong_type: Callable[[object], str | None] | None = None,
) -> dict[str, Any]:
    """Field metadata: a rule of the field's own, and maybe better words for a wrong type.

    ``check`` judges a value of the field's type; ``wrong_type``, if given, words the
    problem with a value of another type better than ``_coerce`` does.
    """
    return {"check": check, **({"wrong_type": wrong_type} if wrong_type else {})}


@dataclass(frozen=True, slots=True)
class WebConfig:
    """Where the HTTP server listens and how it shuts down."""

    listen_address: str = field(
        default=DEFAULT_LISTEN_ADDRESS,
        metadata=_rule(_check_listen_address, wrong_type=_listen_address_type),
    )
    shutdown_timeout_seconds: float = field(default=1.0, metadata=_rule(_check_positive))
    uvloop: bool = True
    config_file: str | None = None
    open_paths: tuple[str, ...] = field(
        default=("/healthz", "/readyz"), metadata=_rule(_check_paths)
    )
    header_timeout_seconds: float = field(default=10.0, metadata=_rule(_check_positive))
    max_connections: int = field(default=4096, metadata=_rule(_check_at_least_one))

    @property
    def address(self) -> ListenAddress:
        """The listen address, parsed (validated when the config was loaded)."""
        return parse_listen_address(self.listen_address)


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What the monitored application calls itself."""

    api_version: int = field(default=1, metadata=_rule(_check_at_least_one))
    version: str | None = None
    distribution: str | None = None


@dataclass(frozen=True, slots=True)
class CommitConfig:
    """Where the commit comes from; the first source that yields a value wins."""

    value: str | None = None
    env: tuple[str, ...] = field(
        default=("COMMIT", "GIT_COMMIT", "SOURCE_COMMIT"), metadata=_rule(_check_not_blank)
    )
    file: str | None = None
    git_dir: str | None = None


# Which modules get a module_info series: every one, those with known vulnerabilities, none.
ModulePublish = Literal["all", "vulnerable", "none"]


@dataclass(frozen=True, slots=True)
class ModulesConfig:
    """Which modules are reported and from where, and which of them get a module_info series."""

    source: Literal["installed", "loaded"] = "installed"
    paths: tuple[str, ...] = field(default=(), metadata=_rule(_check_not_blank))
    include: tuple[str, ...] = field(default=(), metadata=_rule(_check_not_blank))
    exclude: tuple[str, ...] = field(default=(), metadata=_rule(_check_not_blank))
    max: int = field(default=5000, metadata=_rule(_check_at_least_one))
    publish: ModulePublish = "all"


@dataclass(frozen=True, slots=True)
class RedactConfig:
    """What to leave out of the published data; a redacted value becomes ``<redacted>``."""

    hostname: bool = False
    server_address: bool = False
    modules: Literal["none", "json", "metrics", "both"] = "none"

    def modules_hidden_from(self, output: Literal["json", "metrics"]) -> bool:
        """Whether the module list is redacted from ``output``."""
        return self.modules in (output, "both")


def _check_dates(values: Mapping[str, Any]) -> str | None:
    for minor, day in values.items():
        if not re.fullmatch(r"[0-9]+\.[0-9]+", minor):
            return f"entry {minor!r}: keys are minor versions such as '3.11'"
        if isinstance(day, datetime.date):  # YAML reads an unquoted 2027-10-31 as a date
            continue
        try:
            datetime.date.fromisoformat(str(day))
        except ValueError:
            return f"entry {minor!r}: {day!r} is not a date (YYYY-MM-DD)"
    return None


@dataclass(frozen=True, slots=True)
class AdvisoriesConfig:
    """Offline OSV advisory databases to match the modules against; none by default."""

    paths: tuple[str, ...] = field(default=(), metadata=_rule(_check_not_blank))
    ignore: tuple[str, ...] = field(default=(), metadata=_rule(_check_not_blank))


@dataclass(frozen=True, slots=True)
class PythonConfig:
    """Facts about Python that the shipped tables may not know (vendor builds)."""

    end_of_life: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), metadata=_rule(_check_dates)
    )


@dataclass(frozen=True, slots=True)
class RefreshConfig:
    """How often the facts are gathered again."""

    interval_seconds: float = field(default=60.0, metadata=_rule(_check_positive))


TARGET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class TargetCommitConfig:
    """Where a target's commit comes from: the keys of ``commit``, but no environment
    variable by default (the exporter's own environment says nothing of a target's)."""

    value: str | None = None
    env: tuple[str, ...] = field(default=(), metadata=_rule(_check_not_blank))
    file: str | None = None
    git_dir: str | None = None


@dataclass(frozen=True, slots=True)
class TargetModulesConfig:
    """A target's own ``modules.publish``; null (the default) keeps the top-level one."""

    publish: ModulePublish | None = None


@dataclass(frozen=True, slots=True)
class EnvironmentTargetConfig:
    """One configured environment: a venv root or site-packages directories, by name."""

    name: str = ""
    paths: tuple[str, ...] = field(default=(), metadata=_rule(_check_not_blank))
    commit: TargetCommitConfig = field(default_factory=TargetCommitConfig)
    app: AppConfig = field(default_factory=AppConfig)
    modules: TargetModulesConfig = field(default_factory=TargetModulesConfig)


def _check_environments(values: tuple[EnvironmentTargetConfig, ...]) -> str | None:
    seen: set[str] = set()
    for index, target in enumerate(values):
        where = f"[{index}]"
        if not TARGET_NAME.fullmatch(target.name):
            return (
                f"{where}.name: {target.name!r} must be 1 to 64 of A-Z a-z 0-9 _ . -"
                if target.name
                else f"{where}.name: required"
            )
        if target.name in seen:
            return f"{where}.name: {target.name!r} is used twice; names must be unique"
        seen.add(target.name)
        if not target.paths:
            return f"{where}.paths: required (a venv root or site-packages directories)"
    return None


# The fields a discovered target's name template may use (see targets.discover.name).
DISCOVER_NAME_FIELDS = (
    "service",
    "exe_base",
    "unit",
    "container",
    "pod",
    "namespace",
    "container_id",
    "venv",
)


def _check_regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as exc:
        return f"not a regular expression: {exc}"
    return None


@dataclass(frozen=True, slots=True)
class ProcessMatcherConfig:
    """Regular expressions (``re.search``) on a process's executable and command line; the
    command line is its arguments joined with spaces. Both given: both must match."""

    exe: str | None = field(default=None, metadata=_rule(_check_regex))
    cmdline: str | None = field(default=None, metadata=_rule(_check_regex))


def _check_matchers(values: tuple[ProcessMatcherConfig, ...]) -> str | None:
    for index, matcher in enumerate(values):
        if matcher.exe is None and matcher.cmdline is None:
            return f"[{index}]: give exe, cmdline or both"
    return None


def _check_name_template(value: str) -> str | None:
    import string

    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError as exc:
        return f"not a name template: {exc}"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in DISCOVER_NAME_FIELDS:
            known = " ".join(f"{{{f}}}" for f in DISCOVER_NAME_FIELDS)
            return f"unknown field {{{name}}} (known: {known})"
        if spec or conversion:
            return f"{{{name}}}: no conversion or format spec"
    if not value.strip():
        return "must not be empty"
    return None


def _check_absolute(value: str) -> str | None:
    return None if value.startswith("/") else f"must be an absolute path, got {value!r}"


@dataclass(frozen=True, slots=True)
class DiscoverConfig:
    """Python processes found in procfs as targets, grouped by environment; off by default."""

    processes: bool = False
    procfs: str = field(default="/proc", metadata=_rule(_check_absolute))
    include: tuple[ProcessMatcherConfig, ...] = field(default=(), metadata=_rule(_check_matchers))
    exclude: tuple[ProcessMatcherConfig, ...] = field(default=(), metadata=_rule(_check_matchers))
    name: str = field(default="{service}", metadata=_rule(_check_name_template))
    # The kubelet's container log links, read by name only (pod, namespace, container).
    kubelet_logs: str = field(default="/var/log/containers", metadata=_rule(_check_absolute))


@dataclass(frozen=True, slots=True)
class TargetsConfig:
    """The environments reported besides the exporter's own; none by default."""

    environments: tuple[EnvironmentTargetConfig, ...] = field(
        default=(), metadata=_rule(_check_environments)
    )
    # Module series published over all targets at the most; the rest are dropped, counted.
    max_module_series: int = field(default=200_000, metadata=_rule(_check_at_least_one))
    discover: DiscoverConfig = field(default_factory=DiscoverConfig)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, as ``config.yaml`` lays it out."""

    web: WebConfig = field(default_factory=WebConfig)
    app: AppConfig = field(default_factory=AppConfig)
    commit: CommitConfig = field(default_factory=CommitConfig)
    modules: ModulesConfig = field(default_factory=ModulesConfig)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    redact: RedactConfig = field(default_factory=RedactConfig)
    advisories: AdvisoriesConfig = field(default_factory=AdvisoriesConfig)
    python: PythonConfig = field(default_factory=PythonConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)


def load_config(path: str | Path) -> Config:
    """Read and validate the YAML file at ``path``; raise ConfigError naming every problem.

    Relative paths inside the file (``commit.file``, ``commit.git_dir``,
    ``modules.paths``, ``advisories.paths``) are taken relative to the file's own directory, as
    Prometheus does.
    """
    path = Path(path)
    data = read_yaml(path)
    config = config_from_mapping({} if data is None else data, source=str(path))
    return _resolve_paths(config, path.parent)


def config_from_mapping(data: object, *, source: str = "config") -> Config:
    """Validate an already parsed mapping against the schema; raise ConfigError on faults."""
    return build_dataclass(Config, data, source=source)


T = typing.TypeVar("T")


def build_dataclass(cls: type[T], data: object, *, source: str) -> T:
    """Build frozen dataclass ``cls`` from parsed YAML; raise ConfigError naming every fault."""
    problems: list[str] = []
    built = _build(cls, data, "", problems)
    if problems:
        raise ConfigError([f"{source}: {p}" for p in problems])
    return typing.cast(T, built)


def read_yaml(path: Path) -> object:
    """Parse a YAML file; raise ConfigError with the file and, for bad YAML, where it broke."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: invalid YAML{at}: {problem}"]) from None


def _resolve_paths(config: Config, base: Path) -> Config:
    def resolve(p: str) -> str:
        return str(base / p) if not Path(p).is_absolute() else p

    commit = dataclasses.replace(
        config.commit,
        file=resolve(config.commit.file) if config.commit.file else None,
        git_dir=resolve(config.commit.git_dir) if config.commit.git_dir else None,
    )
    modules = dataclasses.replace(
        config.modules, paths=tuple(resolve(p) for p in config.modules.paths)
    )
    web = dataclasses.replace(
        config.web, config_file=resolve(config.web.config_file) if config.web.config_file else None
    )
    advisories = dataclasses.replace(
        config.advisories, paths=tuple(resolve(p) for p in config.advisories.paths)
    )
    environments = tuple(
        dataclasses.replace(
            target,
            paths=tuple(resolve(p) for p in target.paths),
            commit=dataclasses.replace(
                target.commit,
                file=resolve(target.commit.file) if target.commit.file else None,
                git_dir=resolve(target.commit.git_dir) if target.commit.git_dir else None,
            ),
        )
        for target in config.targets.environments
    )
    targets = dataclasses.replace(config.targets, environments=environments)
    return dataclasses.replace(
        config, commit=commit, modules=modules, web=web, advisories=advisories, targets=targets
    )


def _build(cls: type, data: object, prefix: str, problems: list[str]) -> object:
    """Build dataclass ``cls`` from ``data``, appending one line to ``problems`` per fault."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(data, Mapping):
        problems.append(f"{where}: expected a mapping of keys, got {_describe(data)}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            problems.append(f"{prefix}{key}: unknown key (known keys here: {known})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(typing.cast(type, hint), data[name], f"{key}.", problems)
            continue
        value, problem = _coerce(hint, data[name])
        if problem is not None and "wrong_type" in f.metadata:
            problem = f.metadata["wrong_type"](data[name]) or problem
        elif problem is None and "check" in f.metadata and value is not None:
            problem = f.metadata["check"](value)
        if problem is not None:
            problems.append(f"{key}: {problem}")
        else:
            values[name] = value
    return cls(**values)


def _coerce(hint: Any, value: object) -> tuple[Any, str | None]:
    """Return ``(value, None)`` when ``value`` fits type ``hint``, else ``(None, problem)``."""
    if hint is Any:
        return value, None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None, None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value)
    if origin is Literal:
        if value in args:
            return value, None
        choices = ", ".join(repr(a) for a in args)
        return None, f"must be one of {choices}, got {_describe(value)}"
    if origin in (Mapping, dict):
        if not isinstance(value, dict):
            return None, f"expected a mapping, got {_describe(value)}"
        entries: dict[Any, Any] = {}
        for key, item in value.items():
            coerced_key, problem = _coerce(args[0], key)
            if problem is None:
                coerced_item, problem = _coerce(args[1], item)
            if problem is not None:
                return None, f"entry {key!r}: {problem}"
            entries[coerced_key] = coerced_item
        return MappingProxyType(entries), None
    if origin is tuple:
        if not isinstance(value, list):
            return None, f"expected a list, got {_describe(value)}"
        items = []
        if dataclasses.is_dataclass(args[0]):  # a list of sections: each built as one
            problems: list[str] = []
            for index, item in enumerate(value):
                items.append(_build(typing.cast(type, args[0]), item, f"[{index}].", problems))
            return (None, "; ".join(problems)) if problems else (tuple(items), None)
        for index, item in enumerate(value):
            coerced, problem = _coerce(args[0], item)
            if problem is not None:
                return None, f"item {index}: {problem}"
            items.append(coerced)
        return tuple(items), None
    if hint is bool:
        if isinstance(value, bool):
            return value, None
        return None, f"expected true or false, got {_describe(value)}"
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        return None, f"expected an integer, got {_describe(value)}"
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), None
        return None, f"expected a number, got {_describe(value)}"
    if hint is str:
        if isinstance(value, str):
            return value, None
        hint_text = f" (quote it: '{value}')" if isinstance(value, int | float) else ""
        return None, f"expected a string, got {_describe(value)}{hint_text}"
    raise TypeError(f"unsupported config type {hint!r}")  # a schema bug, not user input


def _describe(value: object) -> str:
    names = {
        type(None): "null",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    kind = names.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{kind} {shown}" if value is not None else kind
