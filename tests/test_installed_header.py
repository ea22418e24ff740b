"""The header reading of the installed scan: the same names, versions, licences and
requirements as the line-by-line reading it replaced, on any header."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.collectors.installed import MetadataError, _distribution, _header_of
from exporter.collectors.packages import MAX_LICENSE_LENGTH, requirement_lines


def line_by_line(header: bytes) -> dict[str, bytes]:
    """The reading the scan used before: each line in turn, up to the first empty one."""
    fields: dict[str, bytes] = {}
    for raw in header.split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line:
            break
        if line.startswith((b"Name:", b"Version:")):
            key, _, value = line.partition(b":")
            fields.setdefault(key.decode(), value.strip())
    return fields


def decoded(raw: bytes) -> str:
    try:
        value = raw.strip().decode("utf-8")
    except UnicodeDecodeError:
        return ""
    return value if value.isprintable() else ""


def licences_line_by_line(header: bytes) -> tuple[str, str, tuple[str, ...]]:
    """License-Expression, License and classifiers, read from every line of the header."""
    lines = header.split(b"\n")
    expression = text = ""
    classifiers = []
    for index, line in enumerate(lines):
        if line.startswith(b"License-Expression:"):
            expression = expression or decoded(line[19:])
        elif line.startswith(b"License:") and not text:
            following = lines[index + 1][:1] if index + 1 < len(lines) else b""
            value = decoded(line[8:])
            if value and following not in (b" ", b"\t") and len(value) <= MAX_LICENSE_LENGTH:
                text = "" if value.upper() == "UNKNOWN" else value
        if line.startswith(b"Classifier: License ::"):
            last = decoded(line[11:]).rpartition(" :: ")[2]
            if last and last != "OSI Approved":
                classifiers.append(last)
    return expression, text, tuple(classifiers)


LINES = st.sampled_from(
    [
        b"Name: Foo_Bar",
        b"Name:  spaced ",
        b"Name:",
        b"Version: 1.0",
        b"Version: 2.0\r",
        b"Version:",
        b"",
        b"\r",
        b"\r\r",
        b" continued",
        b"\tcontinued",
        b"License: MIT",
        b"License: UNKNOWN",
        b"License: \xff",
        b"License-Expression: Apache-2.0",
        b"License-File: LICENSE",
        b"Classifier: License :: OSI Approved :: MIT License",
        b"Classifier: License :: OSI Approved",
        b"Classifier: Topic :: Utilities",
        b"Requires-Dist: other>=1",
        b'Requires-Dist: extra; extra == "x"',
        b"Summary: Name: Version: License",
        b"License: MIT License",
        b"License: License",
        b"Classifier: License :: OSI Approved :: BSD License",
        b"Project-URL: License, https://example.org/License",
        b"Summary: License License License License License License License License License",
        b"name: lower",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(LINES, max_size=14))
def test_fields_licences_and_requirements_match_the_line_by_line_reading(lines):
    """Name and Version (or the same missing one), the licence fields, the classifiers and
    the Requires-Dist values equal a plain reading of each line up to the empty one."""
    block = b"\n".join(lines)
    fields = line_by_line(block)
    if not fields.get("Name") or not fields.get("Version"):
        missing = "Name" if not fields.get("Name") else "Version"
        with pytest.raises(MetadataError, match=f"^no {missing}$"):
            _distribution(block)
        return
    dist = _distribution(block)
    assert dist.info is not None
    assert dist.info.name.encode() == fields["Name"]
    assert dist.version.encode() == fields["Version"]
    info = dist.info
    assert (info.license_expression, info.license, info.license_classifiers) == (
        licences_line_by_line(block)
    )
    every = tuple(v for line in lines if (v := decoded_requirement(line)))
    assert info.requires == every
    assert requirement_lines(info.requires_block) == every


def decoded_requirement(line: bytes) -> str:
    return decoded(line[14:]) if line.startswith(b"Requires-Dist:") else ""


@given(st.lists(LINES, max_size=14), st.sampled_from([b"\n\n", b"\r\n\r\n", b"\n\r\n"]))
def test_the_header_block_is_cut_where_it_was(lines, blank):
    """_header_of cuts the header where _header_block of _read_header does."""
    from exporter.collectors.installed import _header_block, _read_header

    data = b"Metadata-Version: 2.1\n" + b"\n".join(lines) + blank + b"Version: 9 (body)\n"

    def reader():
        chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
        return lambda size: chunks.pop(0) if chunks else b""

    assert _header_of(reader()) == _header_block(_read_header(reader()))


VALUES = st.sampled_from(
    [
        b"Foo_Bar",
        b"1.0",
        b"a b",
        b" spaced",
        b"trailing ",
        b"\xc3\xa9t\xc3\xa9",
        b"x" * 200,
        b"x" * 201,
        b"",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from([b"2.1", b"1.0", b"2.4", b"", b"2.1 "]),
    VALUES,
    VALUES,
    st.lists(LINES, max_size=12),
    st.sampled_from([b"\n\n", b"\n\nBody\nLicense: body\n", b"\n"]),
    st.sampled_from([0, 4096 - 64, 4096 - 8]),
)
def test_a_file_read_the_common_way_gives_what_the_general_way_gives(
    tmp_path_factory, version, name, release, lines, rest, pad
):
    """A METADATA file that starts with Metadata-Version, Name and Version (read by the
    common-top path, whatever its values: a value the pattern refuses goes the general
    way) gives the name, version, licence and requirements, or the same error, that the
    general reading of its header block gives, however far into the first read the
    header ends."""
    from exporter.collectors.installed import _header_block, _read_header, read_distribution

    top = b"Metadata-Version: " + version + b"\nName: " + name + b"\nVersion: " + release + b"\n"
    middle = b"\n".join(lines)
    filler = b"Summary: " + b"s" * pad + b"\n" if pad else b""
    data = top + filler + middle + rest
    path = tmp_path_factory.mktemp("m") / "METADATA"
    path.write_bytes(data)
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    header = _header_block(_read_header(lambda size: chunks.pop(0) if chunks else b""))
    try:
        expected = _distribution(header)
    except MetadataError as exc:
        with pytest.raises(MetadataError, match=f"^{exc}$"):
            read_distribution(str(path))
        return
    got = read_distribution(str(path))
    assert got == expected
    assert got.info is not None
    assert expected.info is not None
    assert (got.info.licence_block, got.info.requires_block) == (
        expected.info.licence_block,
        expected.info.requires_block,
    )
