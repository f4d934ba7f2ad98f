"""The report's verdict per requirement, from test outcomes alone (no pytest run)."""

import json

from asgi_conformance.report import DEVIATION, FAIL, NOT_RUN, PASS, SKIP, ConformanceReport, TestOutcome
from asgi_conformance.requirements import REQUIREMENTS


def report_with(*outcomes):
    report = ConformanceReport("some.Layer", strict=False)
    for rid, outcome, detail in outcomes:
        report.record(rid, TestOutcome(f"test_{rid}", outcome, detail))
    return report


def verdict(report, rid):
    return next(v for v in report.verdicts() if v.requirement_id == rid)


def test_one_failing_test_fails_the_requirement_even_if_others_pass():
    report = report_with(("CAP-1", PASS, ""), ("CAP-1", FAIL, "no ChannelFull"))
    assert verdict(report, "CAP-1").status == FAIL
    assert verdict(report, "CAP-1").details == ["no ChannelFull"]
    assert report.failed


def test_a_deviation_is_reported_but_does_not_fail_the_run():
    report = report_with(("CAP-3", DEVIATION, "pattern ignored"), ("CAP-1", PASS, ""))
    assert verdict(report, "CAP-3").status == DEVIATION
    assert not report.failed


def test_a_requirement_is_skipped_only_when_all_its_tests_skipped():
    report = report_with(("XP-1", SKIP, "single process"), ("NAME-4", SKIP, "no path"), ("NAME-4", PASS, ""))
    assert verdict(report, "XP-1").status == SKIP
    assert verdict(report, "XP-1").details == ["single process"]
    assert verdict(report, "NAME-4").status == PASS


def test_requirements_without_tests_are_not_run():
    assert verdict(report_with(), "GRP-1").status == NOT_RUN


def test_every_requirement_appears_once_in_the_json_and_the_table():
    report = report_with(("MSG-1", PASS, ""))
    rows = json.loads(report.to_json())["requirements"]
    assert [row["id"] for row in rows] == list(REQUIREMENTS)
    table = "\n".join(report.render())
    for rid in REQUIREMENTS:
        assert f" {rid} " in table


def test_long_details_are_wrapped_not_cut():
    detail = "word " * 60 + "END"
    report = report_with(("CAP-1", FAIL, detail))
    assert "END" in "\n".join(report.render(width=80))


def test_each_verdict_line_carries_its_status_and_only_verdict_lines_do():
    report = report_with(("CAP-1", FAIL, "no ChannelFull"), ("CAP-3", DEVIATION, "pattern ignored"), ("MSG-1", PASS, ""))
    lines = report.render_lines()
    statuses = {line.text.split()[0]: line.status for line in lines if line.status is not None}
    assert statuses["CAP-1"] == FAIL and statuses["CAP-3"] == DEVIATION and statuses["MSG-1"] == PASS
    assert set(statuses) == set(REQUIREMENTS)
    assert [line.text for line in lines] == report.render()


def test_the_report_names_the_catalogue_version_and_each_row_since_when():
    from asgi_conformance.requirements import CATALOGUE_VERSION

    report = report_with(("MSG-1", PASS, ""))
    assert f"requirement catalogue {CATALOGUE_VERSION}" in report.render()[1]
    data = json.loads(report.to_json())
    assert data["catalogue_version"] == CATALOGUE_VERSION
    since = {row["id"]: row["since"] for row in data["requirements"]}
    assert since["MSG-1"] == "0.1.0" and since["FAULT-1"] == "0.2.0"
