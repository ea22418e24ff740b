"""The queries a fleet is asked: every dashboard panel's and variable's, the README's, and
Prometheus's own figures; and a client for the Prometheus HTTP API (which VictoriaMetrics
serves too).

Grafana's variables are substituted as the dashboard's defaults give them (every variable's
default is All, so its ``allValue``), and its interval macros as Grafana computes them for
the dashboard's default time range: ``$__interval`` is the range over the data points a
panel asks for (``MAX_DATA_POINTS``), at least the scrape interval; ``$__rate_interval`` is
``max($__interval + scrape interval, 4 x scrape interval)``; ``$__range`` the range itself.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

MAX_DATA_POINTS = 1000  # about a full-width panel's pixels, what Grafana asks for
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class QueryError(Exception):
    """The server refused a query, or answered an error."""


def seconds(duration: str) -> float:
    """A Prometheus duration (``15s``, ``6h``, ``1h30m``) in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def duration(value: float) -> str:
    """Seconds as a Prometheus duration in whole seconds."""
    return f"{math.ceil(value)}s"


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: its title, type, refId, expression, and instant or range."""

    panel: str
    kind: str
    ref: str
    expr: str
    instant: bool

    @property
    def name(self) -> str:
        """A row name: the panel's title, type and the query's refId."""
        return f"{self.panel} ({self.kind}) [{self.ref}]"


@dataclass(frozen=True)
class VariableQuery:
    """A ``label_values(selector, label)`` variable of the dashboard."""

    name: str
    selector: str
    label: str


@dataclass(frozen=True)
class Macros:
    """Grafana's interval macros for a time range and scrape interval."""

    range_seconds: float
    interval_seconds: float
    rate_interval_seconds: float

    @classmethod
    def for_range(cls, range_seconds: float, scrape_seconds: float) -> Macros:
        """The macros Grafana computes for ``range_seconds`` of a ``scrape_seconds`` job."""
        interval = max(scrape_seconds, math.ceil(range_seconds / MAX_DATA_POINTS))
        return cls(range_seconds, interval, max(interval + scrape_seconds, 4 * scrape_seconds))


def dashboard_range(dashboard: dict[str, Any]) -> float:
    """The dashboard's default time range (``time.from`` now-6h to now) in seconds."""
    start, end = dashboard["time"]["from"], dashboard["time"]["to"]
    if end != "now" or not start.startswith("now-"):
        raise ValueError(f"not a relative range ending now: {start} to {end}")
    return seconds(start.removeprefix("now-"))


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Every target of every panel, rows (which have none) left out."""
    return [
        PanelQuery(p["title"], p["type"], t["refId"], t["expr"], bool(t.get("instant")))
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]


def variable_queries(dashboard: dict[str, Any]) -> list[VariableQuery]:
    """The dashboard's query variables as selector and label."""
    found = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
        if not match:
            raise ValueError(f"variable {variable['name']}: {variable['definition']}")
        found.append(VariableQuery(variable["name"], match.group(1), match.group(2)))
    return found


def defaults(dashboard: dict[str, Any]) -> dict[str, str]:
    """``$name`` -> the value each query variable's default (All) sends: its allValue."""
    values = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        current = variable.get("current", {}).get("value", ["$__all"])
        if current not in (["$__all"], "$__all"):
            raise ValueError(f"variable {variable['name']}: default {current!r} is not All")
        values[f"${variable['name']}"] = variable["allValue"]
    return values


def substitute(expr: str, variables: dict[str, str], macros: Macros) -> str:
    """``expr`` with the variables' values and Grafana's macros put in."""
    values = {
        **variables,
        "$__rate_interval": duration(macros.rate_interval_seconds),
        "$__interval": duration(macros.interval_seconds),
        "$__range": duration(macros.range_seconds),
    }
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def readme_queries(readme: str) -> list[str]:
    """The PromQL of the README's ```promql blocks, one query per non-comment line."""
    return [
        line
        for block in re.findall(r"```promql\n(.*?)```", readme, re.S)
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


class PromAPI:
    """The Prometheus HTTP API at ``url`` (Prometheus, VictoriaMetrics, vmalert)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url
        self.timeout = timeout

    def get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]]) -> Any:
        """GET ``path`` with ``params`` and return the answer's ``data``; raise QueryError."""
        url = f"{self.url}{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            raise QueryError(f"{path} {params}: {error.code} {error.read().decode()}") from None
        if body.get("status") != "success":
            raise QueryError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query at ``at`` (now by default)."""
        params = {"query": expr, "time": f"{time.time() if at is None else at:.3f}"}
        return list(self.get("/api/v1/query", params)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        return list(self.get("/api/v1/query_range", params)["result"])

    def label_values(self, label: str, match: str, start: float, end: float) -> list[str]:
        """The values of ``label`` on series matching ``match`` between start and end."""
        params = [("match[]", match), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
        return list(self.get(f"/api/v1/label/{label}/values", params))

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        """The label sets of series matching ``match`` between start and end."""
        params = [("match[]", match), ("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
        return list(self.get("/api/v1/series", params))

    def rule_groups(self) -> list[dict[str, Any]]:
        """The rule groups with each rule's health and last error."""
        return list(self.get("/api/v1/rules", {})["groups"])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets."""
        return list(self.get("/api/v1/targets", {"state": "active"})["activeTargets"])

    def own_metrics(self) -> str:
        """The server's own /metrics text."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=self.timeout) as response:
            return str(response.read().decode())


def metric_values(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in an exposition: label text -> value."""
    found = {}
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)", re.M)
    for labels, value in pattern.findall(text):
        found[labels] = float(value)
    return found


def label_set(result: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A query result's labels, sorted, as a hashable value."""
    return tuple(sorted(result["metric"].items()))


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    """Call ``fn(*args)``; return the seconds it took and what it returned."""
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result
