"""PrivateStats end to end: `python -m local --param PrivateStats=true`, then the stats from
an HTTP client as curl uses them and from headless Chromium as a user would."""

import json
import stat
import urllib.error
import urllib.request

import pytest

from tests.conftest import local_stack
from tools import browser

CHALLENGE = 'Basic realm="Route Counter stats", charset="UTF-8"'


def token_of(tmp_path) -> str:
    return (tmp_path / "state" / "route-counter" / "stats-token").read_text().strip()


def status_of(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def basic_auth_client(url: str, token: str) -> urllib.request.OpenerDirector:
    """A client that answers the challenge with any user name and the token (curl -u :TOKEN
    --anyauth, or a browser's prompt)."""
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, url, "anyone", token)
    return urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(passwords))


def test_from_an_http_client_the_token_reads_the_stats_and_survives_a_restart(tmp_path):
    with local_stack(tmp_path, "--param", "PrivateStats=true") as stack:
        token_file = tmp_path / "state" / "route-counter" / "stats-token"
        token = token_of(tmp_path)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert str(token_file) in stack.output.read_text()  # the banner says where
        assert status_of(f"{stack.url}/hello")[0] == 200

        status, headers, body = status_of(f"{stack.url}/_stats")
        assert status == 401
        assert headers["WWW-Authenticate"] == CHALLENGE
        assert b"/hello" not in body
        assert status_of(f"{stack.url}/_stats", {"Authorization": "Bearer wrong"})[0] == 401
        assert status_of(f"{stack.url}/_stats/top")[0] == 401

        with basic_auth_client(stack.url, token).open(f"{stack.url}/_stats", timeout=20) as answer:
            routes = json.loads(answer.read())["routes"]
        assert [r["route"] for r in routes] == ["/hello"]
        status, _, body = status_of(f"{stack.url}/_stats/top", {"Authorization": f"Bearer {token}"})
        assert status == 200 and "routes" in json.loads(body)
        output = stack.output.read_text()
    assert token not in output  # neither the banner nor any log line

    with local_stack(tmp_path, "--param", "PrivateStats=true") as stack:  # the same token
        assert token_of(tmp_path) == token
        status, _, body = status_of(f"{stack.url}/_stats", {"Authorization": f"Bearer {token}"})
        assert status == 200
        assert status_of(f"{stack.url}/_stats")[0] == 401
        assert token not in stack.output.read_text()


@pytest.mark.skipif(
    browser.chromium() is None,
    reason="Chromium is not installed (Debian: apt-get install -y chromium)",
)
def test_a_browser_is_asked_for_the_token_and_then_shows_the_dashboard(tmp_path):
    with local_stack(tmp_path, "--param", "PrivateStats=true") as stack:
        token = token_of(tmp_path)
        assert status_of(f"{stack.url}/hello")[0] == 200

        with browser.tab() as page:  # the user types any name and the token when asked
            asked = page.open_answering(f"{stack.url}/_stats", 1280, ("me", token))
            assert [(a["scheme"], a["realm"]) for a in asked] == [("basic", "Route Counter stats")]
            assert page.evaluate("document.title") == "Route Counter"
            assert "/hello" in page.evaluate("document.body.innerText")

        with browser.tab() as page:  # asked, and cancelled: the error page, no data
            assert page.open_answering(f"{stack.url}/_stats", 1280, None)
            assert page.evaluate("document.title") == "Error 401"
            assert "/hello" not in page.evaluate("document.body.innerText")

        with browser.tab() as page:  # the credentials in the URL
            page.open(f"http://me:{token}@127.0.0.1:{stack.port}/_stats", 1280)
            assert page.evaluate("document.title") == "Route Counter"

        with browser.tab() as page:  # an Authorization header, as an extension would send it
            page.call("Network.enable", session=True)
            page.call(
                "Network.setExtraHTTPHeaders",
                session=True,
                headers={"Authorization": f"Bearer {token}"},
            )
            page.open(f"{stack.url}/_stats", 375)
            assert page.evaluate("document.title") == "Route Counter"
