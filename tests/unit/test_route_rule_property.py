"""Any path, any event: a well-formed route or a 4xx, never an exception.

Hypothesis generates arbitrary text (lone surrogates, control characters, slashes, escapes,
long strings) and arbitrary event dicts. Example counts stay small for a 2-core machine.
"""

import ast
import json
import re

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, api_event, lambda_context
from tests.unit.test_rate_limit import limited_counter

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
    # Dot segments, plain or escaped, and segments that only look like them.
    st.lists(
        st.sampled_from(["", ".", "..", "%2E", "%2e%2E", ".%2E", "...", ".a", "a", "%41"]),
        max_size=10,
    ).map("/".join),
    # One character at the edges of the control ranges in an otherwise printable ASCII path.
    st.tuples(
        printable_ascii,
        st.sampled_from(["\x00", "\t", "\x1f", " ", "~", "\x7f", "\x80", "\x9f", "\xa0"]),
        printable_ascii,
    ).map("".join),
    st.tuples(
        st.sampled_from(["a", "é", "/", "語", "😀", "%41", "%e9", " ", "\\", '"']),
        st.integers(150, 1100),
    ).map(lambda c: "/" + c[0] * c[1]),
    # Escapes: valid or not, of unreserved, reserved and non-ASCII bytes, in either case.
    st.lists(
        st.one_of(
            st.builds("%{:02x}".format, st.integers(0, 255)),
            st.builds("%{:02X}".format, st.integers(0, 255)),
            st.sampled_from(["%", "%4", "%G1", "/", "a", "~", "é", "\u202e", " ", "?", "#"]),
        ),
        max_size=20,
    ).map("".join),
)
not_strings = st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.integers()))

fixture_settings = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
PATH_CHARACTERS = UNRESERVED | set("!$&'()*+,;=:@/")  # RFC 3986: pchar and "/", no escape


def assert_well_formed(counter, route: str) -> None:
    """A route as README.md's route rule promises it."""
    assert route.startswith("/")
    assert route == "/" or all(route.split("/")[1:]), "no empty segment"
    escapes = re.findall("%(..)", route)
    assert set(re.sub("%..", "", route)) <= PATH_CHARACTERS, "only path characters and escapes"
    assert all(re.fullmatch("[0-9A-F]{2}", e) for e in escapes), "escapes in upper case"
    assert not {chr(int(e, 16)) for e in escapes} & UNRESERVED, "no escaped unreserved character"
    assert not {".", ".."} & set(route.split("/")), "no dot segment"
    assert len(route.encode("utf-8")) <= 1024 < DYNAMODB_PARTITION_KEY_BYTES
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
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        return None, 400
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in path):
        return None, 400
    normal, i = "", 0
    while i < len(raw):  # byte by byte through the UTF-8 of the path
        escape = raw[i + 1 : i + 3].decode("latin-1")
        if raw[i] == ord("%") and re.fullmatch("[0-9A-Fa-f]{2}", escape):
            byte = chr(int(escape, 16))
            normal += byte if byte in UNRESERVED else "%" + escape.upper()
            i += 3
        else:
            byte = chr(raw[i])
            normal += byte if byte in PATH_CHARACTERS else "%" + f"{raw[i]:02x}".upper()
            i += 1
    kept = []  # empty segments folded, then RFC 3986 5.2.4's dot segments removed
    for segment in normal.split("/"):
        if segment == "..":
            kept = kept[:-1]  # at the root, ".." stays at the root
        elif segment not in ("", "."):
            kept.append(segment)
    route = "/" + "/".join(kept)
    if len(route.encode("utf-8")) > 1024:
        return None, 414
    return route, None


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
    ["/" + "a" * 1023, "/" + "é" * 170, "/" + "😀" * 85, "//" + "a/" * 511, "/" + "%41" * 1023],
)
def test_longest_countable_paths_fit_the_partition_key(counter, path):
    status, body = answer(counter, api_event(path))

    assert status == 200
    assert 1021 <= len(body["route"]) <= 1024
    assert_well_formed(counter, body["route"])


@pytest.mark.parametrize(
    ("path", "size"),
    [("/" + "a" * 1024, 1025), ("/" + "é" * 171, 1027), ("/" + "%41" * 1024, 1025)],
)
def test_the_limit_is_on_the_route_not_on_its_spelling(counter, counter_table, path, size):
    status, body = answer(counter, api_event(path))

    assert status == 414
    assert body == {"error": f"the route is {size} bytes; at most 1024 are counted"}
    assert boto3.client("dynamodb").scan(TableName=counter_table)["Items"] == []


@pytest.mark.parametrize(
    ("spellings", "route"),
    [
        (["/caf%C3%A9", "/caf%c3%a9", "/café", "/caf%c3%A9"], "/caf%C3%A9"),
        (["/~user/a-b_c.d", "/%7Euser/a%2Db%5Fc%2ed", "/%7euser/a-b_c.d"], "/~user/a-b_c.d"),
        (["/a%2Fb", "/a%2fb"], "/a%2Fb"),  # an escaped "/" is not a separator
        (["/a%20b", "/a b"], "/a%20b"),
        (["/100%25", "/100%"], "/100%25"),  # a "%" that starts no escape is one
        (["/%3Cb%3E", "/<b>"], "/%3Cb%3E"),
        (["/a&b'c(d)*+,;=:@!$"], "/a&b'c(d)*+,;=:@!$"),
        (["/%E2%80%AEgnp.exe", "/\u202egnp.exe"], "/%E2%80%AEgnp.exe"),
    ],
)
def test_every_spelling_of_a_path_counts_one_route(counter, spellings, route):
    bodies = [answer(counter, api_event(path))[1] for path in spellings]

    assert [b["route"] for b in bodies] == [route] * len(spellings)
    assert [b["count"] for b in bodies] == list(range(1, len(spellings) + 1))


def test_spellings_of_a_route_share_its_rate_limit(counter_table, monkeypatch):
    limited = limited_counter(monkeypatch, "counter_rule_limited", limit=2)
    statuses = [
        limited.handler(api_event(path), lambda_context())["statusCode"]
        for path in ["/caf%c3%a9", "/caf%C3%A9", "/café", "/%63af%C3%A9"]
    ]

    assert statuses == [200, 200, 429, 429]


DOT_SPELLINGS = ["/./api", "/api/%2E", "/x/%2E%2E/api", "/api/.", "/../api", "/a/b/%2e./../api"]


@pytest.mark.parametrize("path", DOT_SPELLINGS)
def test_dot_segments_are_removed_so_the_path_counts_its_own_route(counter, path):
    assert answer(counter, api_event("/api"))[1]["count"] == 1

    status, body = answer(counter, api_event(path))

    assert (status, body["route"], body["count"]) == (200, "/api", 2)


def test_dot_segment_spellings_share_the_rate_limit_of_their_route(counter_table, monkeypatch):
    limited = limited_counter(monkeypatch, "counter_dots_limited", limit=2)
    statuses = [
        limited.handler(api_event(path), lambda_context())["statusCode"]
        for path in ["/api", "/api", "/./api", "/api/%2E", "/x/%2E%2E/api"]
    ]

    assert statuses == [200, 200, 429, 429, 429]
    (item,) = boto3.client("dynamodb").scan(TableName=counter_table)["Items"]
    assert (item["route"], item["count"]) == ({"S": "/api"}, {"N": "2"})


# A segment, and what may be put before it without changing the route: "." (plain or
# escaped), or any segment followed by "..".
plain_segments = st.text(alphabet="abc%é.", min_size=1, max_size=4).filter(
    lambda s: s not in (".", "..") and "%" not in s
)
detours = st.one_of(
    st.sampled_from(["./", "%2E/", "%2e/", "//"]),
    plain_segments.map(lambda s: s + "/../"),
    plain_segments.map(lambda s: s + "/%2E%2E/"),
)


@fixture_settings
@given(
    parts=st.lists(st.tuples(st.lists(detours, max_size=2), plain_segments), max_size=5),
    above_root=st.integers(0, 2),
)
def test_dot_segments_never_make_a_route_of_their_own(counter, parts, above_root):
    plain = "/" + "/".join(segment for _, segment in parts)
    dotted = "/" + "../" * above_root + "".join("".join(d) + s + "/" for d, s in parts)

    assert counter.route_of(dotted) == counter.route_of(plain)


def rule_sources(path) -> dict[str, str]:
    """The source of route_of and of every module-level name it uses, transitively."""
    tree = ast.parse(path.read_text())
    defined = {}
    for node in tree.body:
        targets = [node] if isinstance(node, ast.FunctionDef) else getattr(node, "targets", [])
        for target in targets:
            defined[getattr(target, "name", None) or getattr(target, "id", None)] = node
    found, todo = {}, ["route_of"]
    while todo:
        name = todo.pop()
        if name in found or name not in defined:
            continue
        found[name] = ast.unparse(defined[name])
        todo += [n.id for n in ast.walk(defined[name]) if isinstance(n, ast.Name)]
    return found


def test_both_handlers_hold_the_same_route_rule_text():
    counter_rule = rule_sources(ROOT / "handler" / "counter.py")
    stats_rule = rule_sources(ROOT / "handler" / "stats.py")

    assert {"route_of", "normal_escape", "MAX_PATH_BYTES", "NOT_NORMAL"} <= set(counter_rule)
    assert stats_rule == counter_rule


@fixture_settings
@given(path=paths)
def test_stats_finds_every_counted_route_by_its_name(counter, stats, path):
    counted = counter.handler(api_event(path), lambda_context())
    if counted["statusCode"] != 200:
        return
    route = json.loads(counted["body"])["route"]

    # queryStringParameters holds the value decoded: the route exactly as the stats show it.
    event = api_event("/_stats", query={"route": route})
    found = stats.handler(event, lambda_context("StatsFunction"))

    assert found["statusCode"] == 200
    assert json.loads(found["body"]) == json.loads(counted["body"])
