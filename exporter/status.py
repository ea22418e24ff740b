"""The status as a plain dict, for any framework's own view (Django, Flask, FastAPI...)."""

from __future__ import annotations

from typing import Any

from exporter.config import Config
from exporter.render.json import status_fields
from exporter.snapshot import Identity, take_snapshot

_PROCESS_IDENTITY = Identity.new()


def status_dict(config: Config | None = None, *, server_address: str = "") -> dict[str, Any]:
    """Gather the facts now and return the status JSON's fields as a dict.

    It reads the file system on every call (milliseconds for a thousand
    distributions); a view serving many requests should keep a
    :class:`exporter.StatusCollector` and call its ``status_dict`` instead.
    ``server_id`` is the same for every call in this process.
    """
    snapshot = take_snapshot(config or Config(), _PROCESS_IDENTITY)
    return status_fields(snapshot, server_address)
