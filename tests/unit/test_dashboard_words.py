"""The dashboard in its reader's words: routes decoded where that is safe (the stored form
on hover), and none of the implementation's words (stream, aggregator, scan, bucket...)."""

import html
import re
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_stats import BROWSER_ACCEPT, get, seed

# What only someone who knows how the stack is built would say.
IMPLEMENTATION_WORDS = re.compile(
    r"stream|aggregat|dynamo|lambda|scan|bucket|shard|ledger|partition|\bitems?\b|GetItem",
    re.IGNORECASE,
)


# Tags a browser runs on within a line of text: "<b>8 routes</b>: every" reads "8 routes:
# every", with no space where the tag was. Any other tag breaks the text (a space here).
INLINE_TAG = re.compile(r"</?(a|abbr|b|bdi|code|em|i|small|span|strong|sub|sup|time)\b[^>]*>")


def visible_text(page_html: str) -> str:
    """What a reader sees: the page without its style sheet and tags, entities decoded,
    its runs of white space one space (as a browser lays them out)."""
    text = re.sub(r"<style>.*?</style>", "", page_html, flags=re.DOTALL)
    text = re.sub(r"<[^>]+>", " ", INLINE_TAG.sub("", text))
    return " ".join(html.unescape(text).split())


def test_the_front_pages_sentences_read_as_sentences(stats, counter_table):
    """The totals and the stale routes' thresholds, as a reader reads them: no space before
    a colon or a full stop, the threshold links told apart."""
    seed(counter_table, {"/a": 7, "/b": 5})

    _, shown = get(stats, accept=BROWSER_ACCEPT)
    text = visible_text(shown)

    assert "12 hits over 2 routes: every route." in text
    assert "Other thresholds: 1 day, 30 days, 90 days." in text
    assert re.findall(r" [.,:;]", text) == []


def route_cell(page_html: str, route_text: str) -> str:
    """The <bdi> that shows a route in the routes table (its link's text)."""
    found = re.search(r'<bdi dir="ltr"[^>]*>' + re.escape(route_text) + "</bdi>", page_html)
    assert found, f"{route_text!r} is not shown as a route"
    return found[0]


def test_a_route_is_shown_decoded_with_its_stored_form_on_hover(stats, counter_table):
    stored = stats.route_of("/café/menü")[0]
    assert stored == "/caf%C3%A9/men%C3%BC"
    seed(counter_table, {stored: 3})

    _, shown = get(stats, accept=BROWSER_ACCEPT)

    assert route_cell(shown, "/café/menü") == (
        '<bdi dir="ltr" title="/caf%C3%A9/men%C3%BC">/café/menü</bdi>'
    )
    # The link asks for the stored form (its % escaped in the query string).
    assert 'href="?route=/caf%25C3%25A9/men%25C3%25BC"' in shown
    _, json_body = get(stats)
    assert json_body["routes"][0]["route"] == stored  # the API answers the stored form


def test_a_routes_own_page_is_titled_with_its_decoded_form(stats, counter_table):
    seed(counter_table, {"/%E6%97%A5%E6%9C%AC": 2})

    _, shown = get(stats, {"route": "/%E6%97%A5%E6%9C%AC"}, accept=BROWSER_ACCEPT)

    assert "<title>Route /日本</title>" in shown
    assert '<h1><bdi dir="ltr" title="Route /%E6%97%A5%E6%9C%AC">Route /日本</bdi></h1>' in shown


def test_escapes_that_would_read_as_another_route_or_hide_text_stay_as_stored(stats):
    kept = {
        "/a%2Fb": "/a%2Fb",  # a slash inside a segment is not a separator
        "/a%20b": "/a%20b",  # spaces, and the % sign itself, would be ambiguous decoded
        "/100%25": "/100%25",
        "/%E2%80%AEgnp.exe": "/%E2%80%AEgnp.exe",  # RIGHT-TO-LEFT OVERRIDE
        "/a%E2%80%8Bb": "/a%E2%80%8Bb",  # ZERO WIDTH SPACE
        "/a%C2%A0b": "/a%C2%A0b",  # NO-BREAK SPACE
        "/%CC%81x": "/%CC%81x",  # a combining accent would sit on the slash
        "/e%CC%81": "/e\u0301",  # ...on a letter it is that letter's accent
        "/%C3%28": "/%C3%28",  # not UTF-8
        "/%C3%A9%FF": "/é%FF",  # the UTF-8 part decoded, the rest as stored
        "/%EE%80%80": "/%EE%80%80",  # private use
    }
    assert {route: stats.readable(route) for route in kept} == kept


def test_a_hidden_character_is_never_drawn_raw_even_in_a_paging_token(stats, counter_table):
    """A token's route is the client's (tokens are not signed): raw bidi characters in it
    are shown as code points, in the text and on hover."""
    seed(counter_table, {"/q/1": 1, "/q/2": 2})
    route = "/\u202egnp.exe/%C3%A9"
    token = stats.encode_token({"route": {"S": route}})

    result, shown = get(stats, {"limit": "1", "next": token}, accept=BROWSER_ACCEPT)

    assert result["statusCode"] == 200
    assert "\u202e" not in shown
    assert (
        '<bdi dir="ltr" title="/[U+202E]gnp.exe/%C3%A9">'
        "/<span class=cf>U+202E</span>gnp.exe/é</bdi>" in shown
    )


# The fixture's module is only read from: nothing to reset between examples.
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=40))
def test_decoding_loses_nothing_and_shows_nothing_hidden(stats, text):
    """For any stored route: the route rule gives the stored form back from what is shown
    (two routes never read alike), and every character decoded is a visible one."""
    stored, error = stats.route_of("/" + text)
    if error:
        return
    readable = stats.readable(stored)
    assert stats.route_of(readable)[0] == stored
    for c in readable:
        assert c.isascii() or unicodedata.category(c) not in stats.KEPT_ESCAPED
    shown = stats.shown(stored)
    assert re.sub(r"<[^>]*>", "", shown).count("<") == 0  # no markup from a route
