"""Routes as the API names them, end to end: `./deploy.sh --local --openapi FILE --param
MaxRoutes=N`, used over real sockets (docs/routes.md)."""

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import local_stack, start_failure
from tests.unit.test_openapi import YAML


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("routes")
    document = tmp / "openapi.yaml"
    document.write_text(YAML)  # /users/me, /users/{id}, /files/{path+}, ...
    with local_stack(tmp, "--openapi", str(document), "--param", "MaxRoutes=4") as running:
        yield running


def get(url: str, accept: str = "application/json") -> tuple[int, dict | str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            body = response.read().decode()
            return response.status, json.loads(body) if "json" in accept else body
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_templates_from_the_document_the_unmatched_route_and_the_cap(stack):
    assert get(stack.url + "/users/me")[1]["route"] == "/users/me"  # before /users/{id}
    for user in range(5):
        assert get(stack.url + f"/users/{user}")[1]["route"] == "/users/{id}"
    assert get(stack.url + "/files/a/b/c.txt")[1]["route"] == "/files/{path+}"
    assert get(stack.url + "/health")[1]["route"] == "/health"  # unmatched: itself
    # The 4 places are taken: a client sending random paths makes no new route
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: get(f"{stack.url}/users/{n}/x"), range(40)))
    assert {(status, body["route"]) for status, body in answers} == {(200, "/{overflow}")}
    assert get(stack.url + "/health")[1]["count"] == 2  # an existing route still counts

    status, stats = get(stack.url + "/_stats?limit=100")
    assert status == 200
    assert {r["route"]: r["count"] for r in stats["routes"]} == {
        "/users/me": 1,
        "/users/{id}": 5,
        "/files/{path+}": 1,
        "/health": 2,
        "/{overflow}": 40,
    }
    assert stats["overflow"] == {
        "route": "/{overflow}",
        "maxRoutes": 4,
        "routes": 4,
        "reached": True,
    }
    html = get(stack.url + "/_stats", accept="text/html")[1]
    assert "MaxRoutes 4: reached." in html


def test_the_stats_route_is_excluded_on_the_raw_path(stack):
    assert get(stack.url + "/_stats/users/1")[0] == 404  # before any template
    stats = get(stack.url + "/_stats?limit=100")[1]
    assert "/_stats/users/1" not in {r["route"] for r in stats["routes"]}


def test_a_bad_template_is_refused_before_anything_starts(tmp_path):
    run = start_failure(tmp_path, "--param", "RouteTemplates=/users/{id}/,/x")
    assert run.returncode == 2
    assert "parameter RouteTemplates=" in run.stderr
    assert "Traceback" not in run.stderr
