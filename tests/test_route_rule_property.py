"""Any path, any event: a well-formed route or a 4xx, never an exception.

Hypothesis generates arbitrary text (lone surrogates, control characters, slashes, long
strings) and arbitrary event dicts. Example counts stay small for a 2-core machine.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import api_event, lambda_context

DYNAMODB_PARTITION_KEY_BYTES = 2048

# Every code point, lone surrogates included (st.characters() leaves them out by default).
any_char = st.characters(exclude_categories=())
segment = st.text(alphabet=any_char, max_size=12)
printable_ascii = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8
)
paths = st.one_of(
    st.text(alphabet=any_char),
    st.lists(st.one_of(st.just(""), segment), max_size=8).map("/".join),
    st.lists(st.sampled_from(["", "a", "é", "/", "\x00", "\ud800", "%2F"]), max_size=20).map(
        "".join
    ),
    # One character at the edges of the control ranges in an otherwise printable ASCII path.
    st.tuples(
        printable_ascii,
        st.sampled_from(["\x00", "\t", "\x1f", " ", "~", "\x7f", "\x80", "\x9f", "\xa0"]),
        printable_ascii,
    ).map("".join),
    st.tuples(st.sampled_from(["a", "é", "/", "語", "😀"]), st.integers(250, 1100)).map(
        lambda c: "/" + c[0] * c[1]
    ),
)
not_strings = st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.integers()))

fixture_settings = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_well_formed(counter, route: str) -> None:
    assert route.startswith("/")
    assert route == "/" or all(route.split("/")[1:]), "no empty segment"
    assert len(route.encode("utf-8")) <= DYNAMODB_PARTITION_KEY_BYTES
    assert counter.route_of(route) == (route, None), "the rule is idempotent"


@fixture_settings
@given(path=st.one_of(paths, not_strings))
def test_route_rule_gives_a_well_formed_route_or_a_4xx(counter, path):
    route, problem = counter.route_of(path)

    if problem is None:
        assert_well_formed(counter, route)
    else:
        status, message = problem
        assert route is None
        assert 400 <= status < 500
        assert isinstance(message, str)
        assert message


def readme_rule(path: str) -> tuple[str | None, int | None]:
    """The route rule as the README states it, written the plain way: (route, status)."""
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return None, 400
    if size > 1024:
        return None, 414
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in path):
        return None, 400
    return "/" + "/".join(s for s in path.split("/") if s), None


@fixture_settings
@given(path=paths)
def test_route_rule_is_the_readme_rule(counter, path):
    route, problem = counter.route_of(path)

    assert (route, problem and problem[0]) == readme_rule(path)


def answer(counter, event) -> tuple[int, dict | None]:
    result = counter.handler(event, lambda_context())
    assert result["headers"]["Content-Type"] == "application/json"
    return result["statusCode"], json.loads(result["body"]) if result["body"] else None


@fixture_settings
@given(path=paths, method=st.one_of(st.sampled_from(["GET", "POST", "OPTIONS"]), segment))
def test_handler_counts_or_refuses_any_path(counter, path, method):
    status, body = answer(counter, api_event(path, method))

    if status == 200:
        assert_well_formed(counter, body["route"])
        assert body["count"] >= 1
    elif status == 204:
        assert method == "OPTIONS"
    else:
        assert 400 <= status < 500
        assert set(body) == {"error"}


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet=any_char, max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=8,
)
event_keys = st.one_of(
    st.sampled_from(["path", "httpMethod", "resource", "headers", "body", "requestContext"]),
    st.text(max_size=8),
)
non_proxy_events = st.one_of(
    json_values,
    st.dictionaries(event_keys, json_values, max_size=6).filter(
        lambda e: not (isinstance(e.get("httpMethod"), str) and "requestContext" in e)
    ),
)


@fixture_settings
@given(event=non_proxy_events)
def test_handler_answers_4xx_to_anything_not_a_proxy_event(counter, counter_table, event):
    status, body = answer(counter, event)

    assert 400 <= status < 500
    assert set(body) == {"error"}


@pytest.mark.parametrize(
    "path",
    ["/" + "a" * 1023, "/" + "é" * 511, "/" + "😀" * 255, "//" + "a/" * 340],
)
def test_longest_countable_paths_fit_the_partition_key(counter, path):
    status, body = answer(counter, api_event(path))

    assert status == 200
    assert_well_formed(counter, body["route"])
