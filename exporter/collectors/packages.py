"""What an SBOM says of each installed distribution beyond its version: its name as
written and its licence, read from the metadata header.

Read once per distribution file: the result of a metadata file whose
directory scan was reused is reused too, so an unchanged environment costs a
dictionary lookup per distribution.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.collectors.installed import InstalledScan

MAX_HEADER_BYTES = 256 * 1024
MAX_LICENSE_LENGTH = 200  # a License field longer than this is the licence's full text


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """A distribution's name as written, and its licence in the forms metadata gives it."""

    name: str
    metadata: str = ""
    license_expression: str = ""
    license: str = ""
    license_classifiers: tuple[str, ...] = ()


def collect_packages(
    scan: InstalledScan, previous: Mapping[str, PackageInfo] | None = None
) -> dict[str, PackageInfo]:
    """PEP 503 name -> PackageInfo for every published distribution of ``scan``.

    ``previous`` is the last result: an entry read from the same metadata file is reused.
    """
    earlier = previous or {}
    found: dict[str, PackageInfo] = {}
    for name, dist in scan.winners().items():
        info = earlier.get(name)
        if info is None or info.metadata != dist.metadata:
            info = read_package_info(dist.metadata)
        found[name] = info
    return found


def read_package_info(metadata_path: str) -> PackageInfo:
    """The Name, License-Expression, License and ``License ::`` classifiers of a header.

    A file that cannot be read gives an empty PackageInfo: the version was
    read already, and a licence is not worth failing a refresh for.
    """
    try:
        fd = os.open(metadata_path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return PackageInfo("", metadata_path)
            head = os.read(fd, MAX_HEADER_BYTES)
        finally:
            os.close(fd)
    except OSError:
        return PackageInfo("", metadata_path)
    header = head.split(b"\n\n", 1)[0].decode("utf-8", errors="replace")
    name = expression = text = ""
    classifiers: list[str] = []
    lines = header.splitlines()
    for index, line in enumerate(lines):
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "Name" and not name:
            name = value
        elif key == "License-Expression" and not expression:
            expression = value
        elif key == "License" and not text:
            continued = index + 1 < len(lines) and lines[index + 1][:1] in (" ", "\t")
            if value and not continued and len(value) <= MAX_LICENSE_LENGTH:
                text = value
        elif key == "Classifier" and value.startswith("License ::"):
            last = value.rpartition(" :: ")[2]
            if last != "OSI Approved":
                classifiers.append(last)
    return PackageInfo(
        name=name if name.isprintable() else "",
        metadata=metadata_path,
        license_expression=expression if expression.isprintable() else "",
        license=text if text.isprintable() and text.upper() not in ("UNKNOWN", "") else "",
        license_classifiers=tuple(c for c in classifiers if c.isprintable()),
    )


def loaded_packages(modules: Mapping[str, str]) -> dict[str, PackageInfo]:
    """Module name -> the distribution providing it, where exactly one does at that version.

    For ``modules.source: loaded``: a module's ``__version__`` names no
    distribution, so the SBOM gives a package URL only where this mapping
    is certain.
    """
    import importlib.metadata  # only this source needs it

    provides = importlib.metadata.packages_distributions()
    found: dict[str, PackageInfo] = {}
    for module, version in modules.items():
        names = set(provides.get(module, ()))
        if len(names) != 1:
            continue
        (name,) = names
        try:
            installed = importlib.metadata.version(name)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
        if installed == version:
            found[module] = PackageInfo(name)
    return found
