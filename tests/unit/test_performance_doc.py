"""docs/performance.md's table is what bench/report.py makes of the committed results."""

import copy
import json

import pytest

from bench import report
from tests.conftest import ROOT

RESULTS = json.loads((ROOT / "bench" / "results.json").read_text(encoding="utf-8"))


def test_the_performance_doc_is_what_the_committed_results_give():
    doc = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert report.rewrite(doc, report.render(RESULTS)) == doc, "run `make docs`"
    assert report.main(["--check"]) == 0


def test_every_row_of_the_results_is_in_the_table():
    region = report.render(RESULTS)
    for row in RESULTS["rows"]:
        assert f"| {row['id']} | " in region


def test_a_changed_number_changes_the_table_and_check_says_so(tmp_path):
    changed = copy.deepcopy(RESULTS)
    changed["rows"][0]["value"] = 1.5
    results = tmp_path / "results.json"
    results.write_text(json.dumps(changed), encoding="utf-8")
    doc = tmp_path / "performance.md"
    doc.write_text((ROOT / "docs" / "performance.md").read_text(encoding="utf-8"))

    assert report.main(["--check", "--results", str(results), "--doc", str(doc)]) == 1
    assert report.main(["--results", str(results), "--doc", str(doc)]) == 0
    assert "| 1.5 calls |" in doc.read_text()
    assert report.main(["--check", "--results", str(results), "--doc", str(doc)]) == 0


def test_only_the_marked_region_is_written():
    doc = f"prose before\n{report.BEGIN}\nold table\n{report.END}\nprose after\n"
    assert report.rewrite(doc, "NEW") == "prose before\nNEW\nprose after\n"
    with pytest.raises(report.ReportError):
        report.rewrite("no markers", "NEW")


def test_a_quick_run_is_refused(tmp_path):
    quick = {**RESULTS, "mode": "quick"}
    with pytest.raises(report.ReportError, match="not measurements"):
        report.render(quick)
