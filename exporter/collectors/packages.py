"""What an SBOM says of a distribution beyond its version: its name as written, its
licence and its requirements, from the metadata header that the installed scan reads anyway.

The header is searched with ``bytes.find`` for the few fields wanted, never split
into lines: 1.8 ms for a thousand headers (the benchmark's synthetic METADATA,
15 classifiers each).

``Requires-Dist`` is in the header of ``*.dist-info/METADATA``; the ``*.egg-info``
layouts keep their requirements in ``requires.txt`` instead, which is not read: an egg's
requirements are empty here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_LICENSE_LENGTH = 200  # a License field longer than this is the licence's full text


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """A distribution's name as written, its licence in the forms metadata gives it, and its
    ``Requires-Dist`` requirements.

    ``requires_block`` is the stretch of the header holding the ``Requires-Dist`` lines,
    as read: a refresh only slices it out (the cold scan's cost is per header), and
    ``requires`` decodes it when an SBOM is rendered.
    """

    name: str
    license_expression: str = ""
    license: str = ""
    license_classifiers: tuple[str, ...] = ()
    requires_block: bytes = b""

    @property
    def requires(self) -> tuple[str, ...]:
        """The ``Requires-Dist`` values as written (PEP 508 strings, markers included)."""
        return requirement_lines(self.requires_block)


def package_info(header: bytes, name: str) -> PackageInfo:
    """``name`` (as written) with the License-Expression, License, ``License ::``
    classifiers and ``Requires-Dist`` lines of a header block.

    ``header`` ends at the header's blank line. Values that are not printable UTF-8
    are left out: a licence is not worth failing a refresh for.
    """
    header = b"\n" + header
    expression = text = ""
    at = header.find(b"\nLicense")
    while at >= 0:
        if header.startswith(b"-Expression:", at + 8):
            expression = expression or _line(header, at + 20)
        elif header.startswith(b":", at + 8) and not text:
            end = header.find(b"\n", at + 9)
            continued = end >= 0 and header[end + 1 : end + 2] in (b" ", b"\t")
            value = _line(header, at + 9)
            if value and not continued and len(value) <= MAX_LICENSE_LENGTH:
                text = "" if value.upper() == "UNKNOWN" else value
        at = header.find(b"\nLicense", at + 8)
    classifiers = []
    at = header.find(b"\nClassifier: License ::")
    while at >= 0:
        last = _line(header, at + 12).rpartition(" :: ")[2]
        if last and last != "OSI Approved":
            classifiers.append(last)
        at = header.find(b"\nClassifier: License ::", at + 1)
    requires = b""
    first = header.find(b"\nRequires-Dist:")
    if first >= 0:  # to the end of the last one; decoded only when an SBOM is rendered
        end = header.find(b"\n", header.rfind(b"\nRequires-Dist:") + 15)
        requires = header[first + 1 : end if end >= 0 else len(header)]
    return PackageInfo(name, expression, text, tuple(classifiers), requires)


def requirement_lines(block: bytes) -> tuple[str, ...]:
    """The values of the ``Requires-Dist`` lines of ``block``; one that is not printable
    UTF-8 is left out, and so is any other field written between them."""
    found = []
    for raw in block.split(b"\n"):
        if raw.startswith(b"Requires-Dist:"):
            try:
                value = raw[14:].strip().decode("utf-8")
            except UnicodeDecodeError:
                continue
            if value and value.isprintable():
                found.append(value)
    return tuple(found)


def _line(header: bytes, start: int) -> str:
    end = header.find(b"\n", start)
    raw = header[start : end if end >= 0 else len(header)].strip()
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return value if value.isprintable() else ""


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
