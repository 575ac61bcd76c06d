"""docs/local-stack.md's first run shows the banner as ./deploy.sh --local prints it today:
every parameter of the template, at its default."""

import re

from tests.conftest import ROOT

DOC = (ROOT / "docs" / "local-stack.md").read_text(encoding="utf-8")


def first_run_banner() -> str:
    section = DOC.split("## The first run", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    return block.split("Route Counter is running locally", 1)[1].split("Ctrl-C to stop.", 1)[0]


def test_the_first_run_banner_lists_every_parameter_at_its_default(template):
    shown = dict(re.findall(r"(\w+)=(''|\S+)", first_run_banner()))
    defaults = {
        name: str(spec.get("Default", "")) or "''" for name, spec in template["Parameters"].items()
    }

    assert shown == defaults
