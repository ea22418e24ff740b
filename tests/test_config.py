"""Config loading: defaults, every kind of error, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import (
    DEFAULT_LISTEN_ADDRESS,
    Config,
    ConfigError,
    ListenAddress,
    load_config,
    parse_listen_address,
)

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_shipped_config_yaml_states_the_defaults():
    """The config.yaml in the repository holds exactly the built-in defaults."""
    assert load_config(REPO / "config.yaml") == Config()


def test_empty_file_means_defaults(tmp_path):
    """An empty file is a valid config with every default."""
    assert load_config(write(tmp_path, "")) == Config()
    assert Config().web.listen_address == DEFAULT_LISTEN_ADDRESS


def test_values_are_read(tmp_path):
    """Values given in the file replace the defaults, lists become tuples."""
    config = load_config(
        write(
            tmp_path,
            "app: {api_version: 2, version: '1.2'}\n"
            "modules: {source: loaded, include: ['dj*'], exclude: ['x']}\n"
            "refresh: {interval_seconds: 2.5}\n",
        )
    )
    assert config.app.api_version == 2
    assert config.app.version == "1.2"
    assert config.modules.source == "loaded"
    assert config.modules.include == ("dj*",)
    assert config.refresh.interval_seconds == 2.5


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    """commit.file, commit.git_dir and modules.paths resolve against the file's directory."""
    config = load_config(
        write(tmp_path, "commit: {file: REV, git_dir: app}\nmodules: {paths: [venv/lib, /abs]}\n")
    )
    assert config.commit.file == str(tmp_path / "REV")
    assert config.commit.git_dir == str(tmp_path / "app")
    assert config.modules.paths == (str(tmp_path / "venv/lib"), "/abs")


def test_advisory_paths_are_relative_and_dates_unquoted_work(tmp_path):
    """advisories.paths resolve like modules.paths; an unquoted YAML date is a date."""
    config = load_config(
        write(
            tmp_path,
            "advisories: {paths: [osv/all.zip], ignore: [CVE-2021-1]}\n"
            "python: {end_of_life: {'3.11': 2030-01-31}}\n",
        )
    )
    assert config.advisories.paths == (str(tmp_path / "osv/all.zip"),)
    assert config.advisories.ignore == ("CVE-2021-1",)
    from exporter.collectors.end_of_life import python_end_of_life
    from exporter.collectors.python import collect_python

    python = collect_python(version="3.11.2", implementation="CPython")
    assert str(python_end_of_life(python, config.python.end_of_life)) == "2030-01-31"


def test_missing_file_is_named(tmp_path):
    """A missing file is one problem naming the path."""
    (problem,) = problems_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in problem
    assert "no such file" in problem


def test_bad_yaml_names_line_and_column(tmp_path):
    """Invalid YAML reports where it broke."""
    (problem,) = problems_of(write(tmp_path, "web:\n  listen_address: [unclosed\n"))
    assert "invalid YAML" in problem
    assert "line" in problem


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("webb: {}", "webb", "unknown key"),
        ("web: {port: 1}", "web.port", "unknown key"),
        ("web: {listen_address: 8080}", "web.listen_address", "expected a string"),
        ("web: {listen_address: 'localhost'}", "web.listen_address", "not host:port"),
        ("web: {listen_address: ':99999'}", "web.listen_address", "0 to 65535"),
        ("web: {listen_address: '::1:80'}", "web.listen_address", "brackets"),
        ("app: {api_version: '1'}", "app.api_version", "expected an integer"),
        ("app: {api_version: true}", "app.api_version", "expected an integer"),
        ("app: {api_version: 0}", "app.api_version", "1 or more"),
        ("commit: {value: 1234567}", "commit.value", "quote it"),
        ("commit: {env: COMMIT}", "commit.env", "expected a list"),
        ("commit: {env: ['']}", "commit.env", "must not be empty"),
        ("modules: {source: pip}", "modules.source", "must be one of"),
        ("modules: {paths: [1]}", "modules.paths", "item 0"),
        ("refresh: {interval_seconds: 0}", "refresh.interval_seconds", "greater than 0"),
        ("refresh: {interval_seconds: fast}", "refresh.interval_seconds", "expected a number"),
        ("refresh: 60", "refresh", "expected a mapping"),
        ("advisories: {paths: ''}", "advisories.paths", "expected a list"),
        ("advisories: {ignore: ['']}", "advisories.ignore", "must not be empty"),
        ("python: {end_of_life: {'3.11': soon}}", "python.end_of_life", "not a date"),
        ("python: {end_of_life: {'three': 2027-10-31}}", "python.end_of_life", "minor versions"),
        ("python: {end_of_life: {3.11: 2027-10-31}}", "python.end_of_life", "quote it"),
        ("[1, 2]", "top level", "expected a mapping"),
    ],
)
def test_each_error_names_file_key_and_problem(tmp_path, text, key, fragment):
    """Every invalid value is refused with the file, the dotted key and the reason."""
    path = write(tmp_path, text)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: {key}")
    assert fragment in problem


@pytest.mark.parametrize("text", ["8397", "'8397'", '"8397"'])
def test_a_bare_port_is_told_what_to_write(tmp_path, text):
    """A bare port, quoted or not, is refused with ':8397' (and the loopback form) to write."""
    (problem,) = problems_of(write(tmp_path, f"web: {{listen_address: {text}}}"))
    assert "write ':8397' to listen on every interface, or '127.0.0.1:8397'" in problem
    assert "quote it" not in problem


@pytest.mark.parametrize("suggested", ["':8397'", "'127.0.0.1:8397'"])
def test_the_suggested_listen_addresses_load(tmp_path, suggested):
    """What the bare-port message suggests is a valid listen address on that port."""
    config = load_config(write(tmp_path, f"web: {{listen_address: {suggested}}}"))
    assert config.web.address.port == 8397


@pytest.mark.parametrize("text", ["99999", "1.5", "[8397]", "true"])
def test_other_non_string_listen_addresses_get_no_port_hint(tmp_path, text):
    """A value that is no port is refused as not a host:port string, with no advice to quote."""
    (problem,) = problems_of(write(tmp_path, f"web: {{listen_address: {text}}}"))
    assert "expected a string host:port, got" in problem
    assert "quote it" not in problem
    assert "write" not in problem


def test_all_problems_are_reported_at_once(tmp_path):
    """Several faults give several lines, not just the first."""
    problems = problems_of(write(tmp_path, "web: {bogus: 1}\nrefresh: {interval_seconds: -1}\n"))
    assert len(problems) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8393", ListenAddress("127.0.0.1", 8393)),
        (":8393", ListenAddress("", 8393)),
        ("[::1]:0", ListenAddress("::1", 0)),
        ("localhost:80", ListenAddress("localhost", 80)),
    ],
)
def test_listen_addresses_parse(text, expected):
    """host:port, :port and [v6]:port are accepted."""
    assert parse_listen_address(text) == expected
