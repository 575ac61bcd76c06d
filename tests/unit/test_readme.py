"""The README stays true: what it documents is what the code offers."""

import re

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def documented_parameters() -> dict[str, str]:
    """Parameter name -> default, from the README's parameter table."""
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_template_parameter_is_documented_with_its_default(template):
    documented = documented_parameters()
    for name, parameter in template["Parameters"].items():
        assert name in documented, f"README has no row for parameter {name}"
        default = str(parameter["Default"])
        expected = f"`{default}`" if default else "*(empty)*"
        assert documented[name] == expected, name


def test_quick_start_is_the_two_commands():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "./deploy.sh --local" in quick_start
    assert "make test" in quick_start
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_make_target_named_in_the_readme_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.MULTILINE))
    for target in re.findall(r"`make ([a-z-]+)", README):
        assert target in targets, target
