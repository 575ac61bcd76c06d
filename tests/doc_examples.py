"""The examples in README.md and docs/, as runnable code: parsed, run, masked, compared.

The convention (a ```console block, see the README's last lines):

- a line starting with `$ ` is a shell command: `curl` against http://127.0.0.1:3000, or a
  `./deploy.sh` subcommand; the lines after it, up to the next command, are its output;
- `<!-- example: --param Name=Value ... -->` on the line right before the fence: the block
  runs on a local stack started with those parameters (one stack per distinct set);
- `$ ./deploy.sh --local [args]` is the stack's start: its output is compared with the
  banner of a stack started with those args;
- `...` in an expected output stands for any text (a line of only `...`: any lines);
- times, request ids and UUIDs, the stack's own ports, pids, paths and timings are masked on
  both sides; everything else must match.

Examples that need AWS are ```bash or ```text blocks, which nothing runs.

    python -m tests.doc_examples [FILE...]   # run the examples, print what differs
"""

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC_URL = "http://127.0.0.1:3000"
FENCE = re.compile(r"^```(\w*)\s*$")
PARAMS = re.compile(r"^<!--\s*example:(.*?)-->\s*$")

MASKS = [
    # ISO 8601 times, with or without seconds, fraction and offset
    (
        re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?"),
        "<time>",
    ),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    # headers whose values are the moment's: the date, the seconds left in a window
    (re.compile(r"^(Date|RateLimit-Reset|Retry-After): .*$", re.M | re.I), r"\1: <masked>"),
    # the local stack's banner: timings, its emulator's port and pid, its state directory
    (re.compile(r"ready in [\d.]+ s"), "ready in <seconds> s"),
    (re.compile(r"moto_server http://127\.0\.0\.1:\d+ \(pid \d+\)"), "moto_server <endpoint>"),
    (re.compile(r"saved in \S+"), "saved in <state dir>"),
]


@dataclass
class Command:
    line: str  # as written, after `$ `
    expected: list[str] = field(default_factory=list)


@dataclass
class Example:
    path: Path
    line: int  # of the opening fence, 1-based
    params: tuple[str, ...]  # from <!-- example: ... -->
    commands: list[Command]

    @property
    def name(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown}:{self.line}"

    @property
    def starts_a_stack(self) -> bool:
        return any(local_args(c.line) is not None for c in self.commands)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def examples(path: Path) -> list[Example]:
    """The ```console blocks of one Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if fence.group(1) == "console":
            params = PARAMS.match(lines[i - 1]) if i else None
            commands: list[Command] = []
            for text in lines[i + 1 : end]:
                if text.startswith("$ "):
                    commands.append(Command(text[2:]))
                elif commands:
                    commands[-1].expected.append(text)
                else:
                    commands.append(Command("", [text]))  # output before any command
            found.append(
                Example(
                    path, i + 1, tuple(shlex.split(params.group(1))) if params else (), commands
                )
            )
        i = end + 1
    return found


def local_args(command: str) -> tuple[str, ...] | None:
    """The arguments of `./deploy.sh --local ...`, or None for another command."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    if words[:1] == ["./deploy.sh"] and "--local" in words:
        return tuple(w for w in words[1:] if w != "--local")
    return None


def problems(example: Example) -> list[str]:
    """Why a block is not a runnable example (it should be ```bash or ```text), if it is not."""
    found = []
    if not example.commands or not example.commands[0].line:
        found.append("output before any `$ ` command")
    for command in example.commands:
        try:
            words = shlex.split(command.line, comments=True)
        except ValueError as error:  # an unfinished quote, a line continued with \\
            found.append(f"`{command.line}`: {error}")
            continue
        if not words:
            continue
        if words[0] == "curl":
            urls = [w for w in words if "://" in w]
            if not urls or any(not u.startswith(DOC_URL + "/") for u in urls):
                found.append(f"`{command.line}`: curl only {DOC_URL}")
        elif words[0] != "./deploy.sh":
            found.append(f"`{command.line}`: only curl and ./deploy.sh run")
    if example.starts_a_stack and len(example.commands) > 1:
        found.append("a `./deploy.sh --local` example holds that one command")
    return found


def mask(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


def matches(expected: str, actual: str) -> bool:
    """Whether actual is expected, masked alike, where `...` stands for any text."""
    pattern = "".join(
        "[\\s\\S]*?" if part == "..." else re.escape(part)
        for part in re.split(r"(\.\.\.)", mask(expected))
    )
    return re.fullmatch(pattern, mask(actual)) is not None


def normalise(output: str) -> str:
    lines = [line.rstrip() for line in output.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def run_command(command: str, url: str, env: dict[str, str]) -> str:
    """Run one example command against the stack at url; its output as the doc shows it."""
    shell = command.replace(DOC_URL, url)
    if shell.startswith("curl "):  # on a terminal curl shows no progress meter; here: -sS
        shell = "curl -sS " + shell[len("curl ") :]
    if shell.startswith("./deploy.sh "):  # deploy.sh's own job beyond this is building .venv
        shell = f"{shlex.quote(sys.executable)} -m deployer " + shell[len("./deploy.sh ") :]
    done = subprocess.run(
        ["bash", "-c", shell],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    port = url.rsplit(":", 1)[1]
    return normalise((done.stdout + done.stderr).replace(f"127.0.0.1:{port}", "127.0.0.1:3000"))


def banner(log: str) -> str:
    """The start-up banner of a local stack's output, up to `Ctrl-C to stop.`"""
    head = log.split("Ctrl-C to stop.", 1)[0]
    return normalise(head + "Ctrl-C to stop.")


def differences(example: Example, outputs: list[str]) -> list[str]:
    """One message per command whose output is not the one the doc shows."""
    found = []
    for command, actual in zip(example.commands, outputs, strict=True):
        expected = normalise("\n".join(command.expected))
        if not matches(expected, actual):
            found.append(
                f"{example.name}: $ {command.line}\n--- the doc shows:\n{expected}\n"
                f"--- it printed:\n{actual}"
            )
    return found


def main(argv: list[str]) -> int:
    """Run the examples of the given files (default: all) and print what differs."""
    import pytest

    targets = [str(Path(__file__).parent / "integration" / "test_doc_examples.py")]
    if argv:
        os.environ["DOC_EXAMPLES_ONLY"] = json.dumps([str(Path(a).resolve()) for a in argv])
    return pytest.main(["-q", *targets])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
