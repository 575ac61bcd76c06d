"""The README stays a front door, and every relative link in it and in docs/ leads somewhere."""

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 260
# Files another branch adds (the lead merges them): a link to one may dangle until then.
WRITTEN_ELSEWHERE: set[Path] = set()  # files another branch writes, while it lands

# [text](target) outside code; images too. Targets with a scheme are not ours to check.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```+|~~~+)[^`]*$")  # a fence line: no backtick after the fence


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where a link is a link."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(lines)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as -."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: dict[str, int] = {}
    result = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6} (.+)$", line)
        if heading and not fenced:
            base = slug(heading.group(1))
            n = found.get(base, 0)
            found[base] = n + 1
            result.add(base if n == 0 else f"{base}-{n}")
    return result


def relative_links(path: Path) -> list[str]:
    targets = LINK.findall(prose(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists() and linked not in WRITTEN_ELSEWHERE:
            broken.append(f"{target}: no such file")
        elif (
            anchor and linked.exists() and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


def test_the_link_checker_sees_a_broken_link_and_anchor(tmp_path: Path):
    (tmp_path / "a.md").write_text("# Title\n\n## Some `code` here\n", encoding="utf-8")
    doc = tmp_path / "b.md"
    doc.write_text(
        "[ok](a.md#some-code-here) [bad](a.md#nope) [gone](c.md) `[not](a link)`\n"
        "```\n[not](inside.md)\n```\n",
        encoding="utf-8",
    )
    assert relative_links(doc) == ["a.md#some-code-here", "a.md#nope", "c.md"]
    assert "some-code-here" in anchors(tmp_path / "a.md")
    assert "nope" not in anchors(tmp_path / "a.md")
