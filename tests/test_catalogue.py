"""The requirement catalogue is versioned: rows say since when, CHANGELOG.md says what changed."""

import re
from pathlib import Path

from asgi_conformance.requirements import CATALOGUE_VERSION, REQUIREMENTS, Requirement, added_in, version_key

ROOT = Path(__file__).resolve().parents[1]


def test_every_row_is_a_named_requirement_with_a_since_no_newer_than_the_catalogue():
    for req in REQUIREMENTS.values():
        assert isinstance(req, Requirement)
        assert re.fullmatch(r"\d+\.\d+\.\d+", req.since), req
        assert version_key(req.since) <= version_key(CATALOGUE_VERSION), req


def test_the_catalogue_version_is_that_of_its_newest_row_and_not_ahead_of_the_package():
    assert max((r.since for r in REQUIREMENTS.values()), key=version_key) == CATALOGUE_VERSION
    package = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert version_key(CATALOGUE_VERSION) <= version_key(package)


def test_the_fault_area_came_with_0_2_0_and_the_rest_with_0_1_0():
    assert {r.id for r in added_in("0.2.0")} == {r.id for r in REQUIREMENTS.values() if r.area == "FAULT"}
    assert len(added_in("0.1.0")) == 42


def test_the_changelog_records_each_catalogue_version_under_a_catalogue_heading():
    text = (ROOT / "CHANGELOG.md").read_text()
    for version in {r.since for r in REQUIREMENTS.values()}:
        section = re.search(rf"^## {re.escape(version)}\b.*?(?=^## |\Z)", text, re.M | re.S)
        assert section, f"CHANGELOG.md has no '## {version}' section"
        assert "### Requirement catalogue" in section.group(0), version
