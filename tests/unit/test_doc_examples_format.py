"""The doc-example checker itself (tests/doc_examples.py): what it runs, masks and compares.
The examples run against the local stack in tests/integration/test_doc_examples.py."""

from pathlib import Path

import pytest

from tests.doc_examples import (
    Example,
    differences,
    documents,
    examples,
    local_args,
    matches,
    problems,
)

ALL = [example for path in documents() for example in examples(path)]


def test_the_docs_hold_runnable_examples():
    assert any(e.path.name == "README.md" for e in ALL)
    assert any(e.path.name == "api.md" for e in ALL)


@pytest.mark.parametrize("example", ALL, ids=lambda e: e.name)
def test_every_console_block_is_runnable(example: Example):
    assert not problems(example), (
        f"{example.name}: {problems(example)}; an example that needs AWS is ```bash or ```text"
    )


def parse(tmp_path: Path, text: str) -> list[Example]:
    doc = tmp_path / "doc.md"
    doc.write_text(text, encoding="utf-8")
    return examples(doc)


def test_a_block_is_commands_outputs_and_the_parameters_of_its_comment(tmp_path: Path):
    [example] = parse(
        tmp_path,
        "text\n<!-- example: --param RateLimit=5 -->\n```console\n"
        '$ curl http://127.0.0.1:3000/a\n{"count": 1}\n$ curl http://127.0.0.1:3000/b\n```\n'
        "```bash\n$ curl https://example.com\n```\n",
    )
    assert example.params == ("--param", "RateLimit=5")
    assert [(c.line, c.expected) for c in example.commands] == [
        ("curl http://127.0.0.1:3000/a", ['{"count": 1}']),
        ("curl http://127.0.0.1:3000/b", []),
    ]
    assert example.line == 3


def test_only_the_local_stack_and_deploy_sh_are_run(tmp_path: Path):
    aws, other, ok = parse(
        tmp_path,
        "```console\n$ curl https://abc.execute-api.eu-west-1.amazonaws.com/prod/x\n```\n"
        "```console\n$ aws s3 ls\n```\n"
        "```console\n$ curl 'http://127.0.0.1:3000/_stats?limit=1'\n$ ./deploy.sh --help\n```\n",
    )
    assert problems(aws) and problems(other)
    assert not problems(ok)
    assert local_args("./deploy.sh --local --param A=1") == ("--param", "A=1")
    assert local_args("./deploy.sh --dry-run") is None


def test_times_ids_and_moment_headers_are_masked_and_nothing_else():
    shown = (
        '{"route": "/a", "count": 2, "lastSeen": "2026-11-28T04:00:00Z", '
        '"requestId": "7111ff5f-6a83-4068-bba1-13e5f6f64218"}'
    )
    printed = (
        '{"route": "/a", "count": 2, "lastSeen": "2026-12-07T21:20:34Z", '
        '"requestId": "80f15a92-65a2-4298-9b2b-d5e3ac51c669"}'
    )
    assert matches(shown, printed)
    assert not matches(shown, printed.replace('"count": 2', '"count": 3'))
    assert not matches(shown, printed.replace('"/a"', '"/b"'))
    assert matches(
        "Date: Sat, 28 Nov 2026\nRetry-After: 45", "Date: Mon, 07 Dec 2026\nRetry-After: 12"
    )
    assert not matches("RateLimit-Limit: 5", "RateLimit-Limit: 6")


def test_an_ellipsis_stands_for_any_text_and_lines():
    assert matches('{"route": "/a", ...}', '{"route": "/a", "count": 1}')
    assert matches("HTTP/1.1 200 OK\n...\n{}", "HTTP/1.1 200 OK\nDate: x\nA: b\n\n{}")
    assert not matches('{"route": "/a", ...}', '{"route": "/b", "count": 1}')


def test_an_output_that_drifted_is_reported(tmp_path: Path):
    [example] = parse(tmp_path, '```console\n$ curl http://127.0.0.1:3000/a\n{"count": 1}\n```\n')
    assert differences(example, ['{"count": 1}']) == []
    [report] = differences(example, ['{"count": 2}'])
    assert 'the doc shows:\n{"count": 1}' in report and 'it printed:\n{"count": 2}' in report
