"""What an SBOM says of a distribution beyond its version: its name as written, its
licence and its requirements, from the metadata header that the installed scan reads anyway.

The header is searched with ``bytes.find`` for the few fields wanted, never split
into lines; a scan only slices out the stretches that hold them, and they are decoded
when an SBOM is rendered.

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
    """A distribution's name as written, and the stretches of its metadata header that hold
    its licence and its ``Requires-Dist`` requirements, as read.

    A scan only slices the stretches out (the cold scan's cost is per header); the licence
    fields and ``requires`` are decoded when an SBOM is rendered. ``licence_block`` runs from
    the first ``License`` or ``Classifier: License ::`` line to the last one, and the first
    character of the line after it (a continuation line says a License field is its full
    text): every line the licence is read from, and no others before or after.
    """

    name: str
    licence_block: bytes = b""
    requires_block: bytes = b""

    @property
    def license_expression(self) -> str:
        """The License-Expression field; "" when there is none."""
        return _licence(self.licence_block)[0]

    @property
    def license(self) -> str:
        """The License field, when it is a short name (not the licence's text, not UNKNOWN)."""
        return _licence(self.licence_block)[1]

    @property
    def license_classifiers(self) -> tuple[str, ...]:
        """The last part of each ``License ::`` classifier but "OSI Approved"."""
        return _licence(self.licence_block)[2]

    @property
    def requires(self) -> tuple[str, ...]:
        """The ``Requires-Dist`` values as written (PEP 508 strings, markers included)."""
        return requirement_lines(self.requires_block)


def package_info(header: bytes, name: str) -> PackageInfo:
    """``name`` (as written) with the stretches of a header block that hold its
    License-Expression, License, ``License ::`` classifiers and ``Requires-Dist`` lines.

    ``header`` ends at the header's blank line. Values that are not printable UTF-8
    are left out (when decoded): a licence is not worth failing a refresh for.
    """
    header = b"\n" + header
    return PackageInfo(name, licence_stretch(header), requires_stretch(header))


def licence_stretch(header: bytes, start: int = 0, end: int = -1) -> bytes:
    """The licence lines of ``header[start:end]`` (which starts with a newline; ``end`` -1:
    the whole), from the first to the last, and the character after the last one's end."""
    if end < 0:
        end = len(header)
    find, rfind = header.find, header.rfind
    field = find(b"\nLicense", start, end)
    classifier = find(b"\nClassifier: License ::", start, end)
    if classifier < 0:
        if field < 0:
            return b""
        first, last = field, rfind(b"\nLicense", field, end)
    else:
        last = rfind(b"\nClassifier: License ::", classifier, end)
        if field < 0:
            first = classifier
        else:
            first = field if field < classifier else classifier
            # Only a License line after the last classifier can be the last licence line.
            later = rfind(b"\nLicense", last, end)
            if later > last:
                last = later
    stop = find(b"\n", last + 1, end)
    return header[first : end if stop < 0 or stop + 2 > end else stop + 2]


def requires_stretch(header: bytes, start: int = 0, end: int = -1) -> bytes:
    """From the first ``Requires-Dist`` line of ``header[start:end]`` (which starts with a
    newline; ``end`` -1: the whole) to the end of the last one."""
    if end < 0:
        end = len(header)
    first = header.find(b"\nRequires-Dist:", start, end)
    if first < 0:
        return b""
    stop = header.find(b"\n", header.rfind(b"\nRequires-Dist:", first, end) + 15, end)
    return header[first + 1 : end if stop < 0 else stop]


_parsed_licences: dict[bytes, tuple[str, str, tuple[str, ...]]] = {}
_MAX_PARSED = 4096  # distinct licence stretches kept decoded; the rest are decoded again


def _licence(block: bytes) -> tuple[str, str, tuple[str, ...]]:
    """License-Expression, License and the classifiers' licences of a ``licence_block``."""
    found = _parsed_licences.get(block)
    if found is None:
        if len(_parsed_licences) >= _MAX_PARSED:
            _parsed_licences.clear()
        found = _parsed_licences[block] = _parse_licence(block)
    return found


def _parse_licence(header: bytes) -> tuple[str, str, tuple[str, ...]]:
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
    return expression, text, tuple(classifiers)


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
