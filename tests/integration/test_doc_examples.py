"""Every ```console example in README.md and docs/ runs against the local stack, and prints
what the doc shows (tests/doc_examples.py says how): an example can no longer drift."""

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAKE_CREDENTIALS, RunningLocalStack, emulator_client, local_stack
from tests.doc_examples import (
    Example,
    banner,
    differences,
    documents,
    examples,
    local_args,
    problems,
    run_command,
)

ONLY = json.loads(os.environ.get("DOC_EXAMPLES_ONLY", "null"))  # python -m tests.doc_examples
EXAMPLES = [
    example
    for path in documents()
    if ONLY is None or str(path) in ONLY
    for example in examples(path)
]


class Stacks:
    """One local stack per distinct parameter set, started when first needed."""

    def __init__(self, tmp: pytest.TempPathFactory, exits: contextlib.ExitStack):
        self.tmp, self.exits, self.running = tmp, exits, {}

    def get(self, params: tuple[str, ...]) -> RunningLocalStack:
        if params not in self.running:
            self.running[params] = self.exits.enter_context(
                local_stack(self.tmp.mktemp("doc-examples"), *params)
            )
        return self.running[params]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacks]:
    with contextlib.ExitStack() as exits:
        yield Stacks(tmp_path_factory, exits)


def empty_tables(stack: RunningLocalStack) -> None:
    """Every table of the stack emptied, so each example starts from no hits at all."""
    dynamodb = emulator_client(stack, "dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        keys = [
            k["AttributeName"]
            for k in dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
        ]
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                dynamodb.delete_item(TableName=table, Key={k: item[k] for k in keys})


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_the_example_prints_what_the_doc_shows(example: Example, stacks: Stacks, tmp_path: Path):
    assert not problems(example), f"{example.name}: not runnable ({problems(example)}): " + (
        "an example that needs AWS is a ```bash or ```text block"
    )
    env = {**os.environ, **FAKE_CREDENTIALS}
    if example.starts_a_stack:
        args = local_args(example.commands[0].line)
        with local_stack(tmp_path, *args) as stack:
            log = stack.output.read_text()
        outputs = [banner(log).replace(stack.url, "http://127.0.0.1:3000")]
    else:
        stack = stacks.get(example.params)
        empty_tables(stack)
        outputs = [run_command(c.line, stack.url, env) for c in example.commands]
    assert not differences(example, outputs), "\n\n".join(differences(example, outputs))
