"""OSV records: reduction, range evaluation and explicit versions, by the schema's rules."""

from __future__ import annotations

import pytest

from exporter.advisories.osv import InstalledVersion, RecordError, parse_record


def record(*affected: dict, **fields: object) -> dict:
    return {"id": "TEST-1", "affected": list(affected), **fields}


def pypi(name: str = "pkg", *, events: list | None = None, versions: list | None = None) -> dict:
    entry: dict = {"package": {"ecosystem": "PyPI", "name": name}}
    if events is not None:
        entry["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
    if versions is not None:
        entry["versions"] = versions
    return entry


def affected(rec: dict, version: str, name: str = "pkg") -> bool:
    parsed = parse_record(rec)
    assert parsed is not None
    return any(a.contains(InstalledVersion.of(version)) for a in parsed.affected[name])


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.9", False),
        ("1.0", True),
        ("1.5", True),
        ("2.0", False),
        ("2.5", False),
        ("3.0", True),
        ("3.1rc1", True),
        ("3.1", False),
    ],
)
def test_pairs_of_introduced_and_fixed(version, expected):
    """Two introduced/fixed pairs in one range affect exactly their two intervals."""
    events = [{"introduced": "3.0"}, {"fixed": "3.1"}, {"introduced": "1.0"}, {"fixed": "2.0"}]
    assert affected(record(pypi(events=events)), version) is expected


@pytest.mark.parametrize(
    ("version", "expected"), [("1.11.0", True), ("1.11.1", False), ("0.1", True)]
)
def test_last_affected_is_inclusive(version, expected):
    """last_affected affects that version and none above it."""
    events = [{"introduced": "0"}, {"last_affected": "1.11.0"}]
    assert affected(record(pypi(events=events)), version) is expected


@pytest.mark.parametrize(
    ("version", "expected"), [("0.5", False), ("1.0", True), ("1.9", True), ("2.0", False)]
)
def test_limit_bounds_a_range_without_a_fix(version, expected):
    """A limit event makes versions at or above it unaffected."""
    events = [{"introduced": "1.0"}, {"limit": "2.0"}]
    assert affected(record(pypi(events=events)), version) is expected


def test_limit_star_is_no_limit():
    """limit '*' is infinity."""
    events = [{"introduced": "1.0"}, {"limit": "*"}]
    assert affected(record(pypi(events=events)), "99.0")


@pytest.mark.parametrize("installed", ["1.0", "1.0.0", "1", "1.0.0.0", "v1.0"])
def test_explicit_versions_compare_by_pep440_equality(installed):
    """An explicit list entry matches every spelling PEP 440 holds equal."""
    assert affected(record(pypi(versions=["1.0.0"])), installed)


def test_explicit_versions_written_unnormalised():
    """An entry written unnormalised (1.0-RC1) still matches its normal form."""
    rec = record(pypi(versions=["1.0-RC1", "2.0"]))
    assert affected(rec, "1.0rc1")
    assert not affected(rec, "1.0")


def test_a_version_pep440_cannot_parse_matches_only_by_its_exact_spelling():
    """An unparseable installed version is affected only when listed as written."""
    rec = record(pypi(events=[{"introduced": "0"}], versions=["2013b-custom"]))
    assert affected(rec, "2013b-custom")
    assert not affected(rec, "2013c-custom")


def test_names_are_compared_after_pep503_normalisation():
    """A record naming Foo_Bar applies to the installed foo-bar."""
    parsed = parse_record(record(pypi("Foo_Bar", versions=["1.0"])))
    assert parsed is not None
    assert set(parsed.affected) == {"foo-bar"}


def test_git_ranges_and_other_ecosystems_are_ignored():
    """GIT ranges and npm packages never match a PyPI install."""
    rec = record(
        {
            "package": {"ecosystem": "PyPI", "name": "pkg"},
            "ranges": [{"type": "GIT", "repo": "x", "events": [{"introduced": "0"}]}],
        },
        {
            "package": {"ecosystem": "npm", "name": "pkg"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}],
        },
    )
    assert not affected(rec, "1.0")


def test_withdrawn_and_foreign_records_are_dropped():
    """A withdrawn record, or one naming no PyPI package, is not an advisory."""
    assert parse_record(record(pypi(versions=["1.0"]), withdrawn="2022-02-22T16:15:07Z")) is None
    assert parse_record(record({"package": {"ecosystem": "npm", "name": "x"}})) is None


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"affected": []}, "id"),
        (record(pypi(events=[{"introduced": "0"}, {"fixed": "not a version!"}])), "PEP 440"),
        (
            record(
                {
                    "package": {"ecosystem": "PyPI", "name": "p"},
                    "ranges": [{"type": "ODD", "events": [{"introduced": "0"}]}],
                }
            ),
            "range type",
        ),
        (record(pypi(events=[{"fixed": "1.0"}])), "introduced"),
        (record(pypi(events=[{"introduced": "0", "fixed": "1"}])), "exactly one"),
        (record({"ranges": []}), "package"),
        ([1, 2], "object"),
    ],
)
def test_bad_records_are_refused_with_a_reason(bad, reason):
    """Records that break the schema raise RecordError naming what is wrong."""
    with pytest.raises(RecordError, match=reason):
        parse_record(bad)


@pytest.mark.parametrize(
    ("fields", "severity"),
    [
        (
            {
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}
                ]
            },
            "critical",
        ),
        (
            {
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N"}
                ]
            },
            "medium",
        ),
        (
            {
                "severity": [
                    {
                        "type": "CVSS_V4",
                        "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                    }
                ]
            },
            "critical",
        ),
        ({"database_specific": {"severity": "MODERATE"}}, "medium"),
        ({"database_specific": {"severity": "HIGH"}}, "high"),
        ({"severity": [{"type": "CVSS_V3", "score": "garbage"}]}, "unknown"),
        ({}, "unknown"),
    ],
)
def test_severity_from_cvss_then_database_specific(fields, severity):
    """A CVSS vector's base score sets the band; else GitHub's label; else unknown."""
    parsed = parse_record(record(pypi(versions=["1"]), **fields))
    assert parsed is not None
    assert parsed.advisory.severity == severity


def test_malicious_packages_are_critical():
    """MAL-* records are critical whatever else they say."""
    parsed = parse_record(
        {
            "id": "MAL-2024-1",
            "affected": [pypi(versions=["1"])],
            "database_specific": {"severity": "LOW"},
        }
    )
    assert parsed is not None
    assert parsed.advisory.severity == "critical"


def test_summary_is_one_bounded_line_and_url_prefers_an_advisory():
    """The summary falls back to details on one line; the url prefers ADVISORY references."""
    parsed = parse_record(
        record(
            pypi(versions=["1"]),
            details="line one\nline two " + "x" * 500,
            references=[
                {"type": "WEB", "url": "https://web"},
                {"type": "ADVISORY", "url": "https://adv"},
                {"type": "ADVISORY", "url": "javascript:alert(1)"},
            ],
        )
    )
    assert parsed is not None
    assert parsed.advisory.summary.startswith("line one line two")
    assert len(parsed.advisory.summary) == 200
    assert parsed.advisory.url == "https://adv"
