"""CI runs every test it has, or fails saying what is missing: the browser tests skip only
outside CI (where the skip says how to get Chromium)."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BROWSER_TESTS = "tests/integration/test_dashboard_browser.py"


def run_browser_tests(
    tmp_path, ci: str | None, options: tuple[str, ...] = ("-rs",)
) -> subprocess.CompletedProcess:
    """The browser tests where no chromium is on PATH (an empty directory)."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(tmp_path)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *options, "-p", "no:cacheprovider", BROWSER_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_in_ci_a_missing_chromium_fails_the_browser_tests_saying_so(tmp_path):
    result = run_browser_tests(tmp_path, "true")

    assert result.returncode == 1, result.stdout
    assert "Chromium is not installed (Debian: apt-get install chromium)" in result.stdout
    assert "CI must install it (.ci/run does)" in result.stdout
    assert " skipped" not in result.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_a_missing_chromium_skips_them_saying_how_to_get_it(tmp_path, ci):
    result = run_browser_tests(tmp_path, ci)

    browser_tests = (ROOT / BROWSER_TESTS).read_text().count("\ndef test_")
    assert result.returncode == 0, result.stdout
    assert f"{browser_tests} skipped" in result.stdout
    assert "Chromium is not installed (Debian: apt-get install chromium)" in result.stdout


def test_make_tests_pytest_says_why_tests_were_skipped(tmp_path):
    """make test runs `pytest -q` (no -rs): the run still ends saying which tests were
    skipped and why, just before its count."""
    result = run_browser_tests(tmp_path, None, options=())

    browser_tests = (ROOT / BROWSER_TESTS).read_text().count("\ndef test_")
    said = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout
    assert said[-2] == (
        f"{browser_tests} tests skipped ({BROWSER_TESTS}): Chromium is not installed (Debian:"
        " apt-get install chromium); it is optional: only the dashboard's browser tests need it"
    )
    assert re.fullmatch(rf"{browser_tests} skipped in [\d.]+s", said[-1]), said[-1]
