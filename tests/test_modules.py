"""Loaded modules (the original behaviour) and the include/exclude filter."""

from __future__ import annotations

import sys
from types import ModuleType

from exporter.collectors.loaded import collect_loaded
from exporter.collectors.modules import ModuleFilter


def module(name, version=None):
    mod = ModuleType(name)
    if version is not None:
        mod.__version__ = version
    return mod


class Exploding(ModuleType):
    """A lazy module whose attribute access raises."""

    def __getattr__(self, name):
        raise RuntimeError("lazy import failed")


def test_loaded_keeps_string_versions_only():
    """Only modules with a string __version__ are reported, dotted names included."""
    found, skipped = collect_loaded(
        {
            "coverage": module("coverage", "4.5.1"),
            "coverage.version": module("coverage.version", "4.5.1"),
            "numbered": module("numbered", (1, 2)),
            "plain": module("plain"),
            "gone": None,
            "lazy": Exploding("lazy"),
        }
    )
    assert found == {"coverage": "4.5.1", "coverage.version": "4.5.1"}
    assert skipped == ()


def test_loaded_skips_unpublishable_versions():
    """A version with control characters or an enormous size is skipped and reported."""
    found, skipped = collect_loaded(
        {"a": module("a", "1\n2"), "b": module("b", "9" * 10_000), "c": module("c", "1")}
    )
    assert found == {"c": "1"}
    assert len(skipped) == 2


def test_loaded_defaults_to_this_process():
    """Without an argument it reads sys.modules, as the original did."""
    found, _ = collect_loaded()
    assert found["json"] == sys.modules["json"].__version__


def test_filter_include_and_exclude():
    """Include narrows, exclude removes, both are globs; output is sorted."""
    modules = {"django": "4", "django-filter": "2", "flask": "3", "pip": "24"}
    assert ModuleFilter().apply(modules) == modules
    assert list(ModuleFilter(include=["dj*"]).apply(modules)) == ["django", "django-filter"]
    assert list(ModuleFilter(include=["dj*", "pip"], exclude=["*-filter"]).apply(modules)) == [
        "django",
        "pip",
    ]
    assert ModuleFilter(exclude=["*"]).apply(modules) == {}


def test_loaded_never_runs_a_module_getattr():
    """A __version__ served by a module __getattr__ is not read, so no module code runs."""
    calls = []
    lazy = ModuleType("lazy")

    def module_getattr(name):
        calls.append(name)
        return "9.9"

    lazy.__getattr__ = module_getattr
    found, _ = collect_loaded({"lazy": lazy, "plain": module("plain", "1.0")})
    assert found == {"plain": "1.0"}
    assert calls == []
