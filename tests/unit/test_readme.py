"""The README and docs/ stay true: what they document is what the code offers."""

import re

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
PARAMETERS = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
DOCS = [README, *((p.read_text(encoding="utf-8")) for p in sorted((ROOT / "docs").glob("*.md")))]


def documented_parameters() -> dict[str, str]:
    """Parameter name -> default, from the parameter table of docs/parameters.md."""
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", PARAMETERS, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_template_parameter_is_documented_with_its_default(template):
    documented = documented_parameters()
    for name, parameter in template["Parameters"].items():
        assert name in documented, f"docs/parameters.md has no row for parameter {name}"
        default = str(parameter["Default"])
        expected = f"`{default}`" if default else "*(empty)*"
        assert documented[name] == expected, name


def test_quick_start_is_the_two_commands():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "./deploy.sh --local" in quick_start
    assert "make test" in quick_start
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_make_target_named_in_the_docs_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.MULTILINE))
    for doc in DOCS:
        for target in re.findall(r"`make ([a-z-]+)", doc):
            assert target in targets, target
