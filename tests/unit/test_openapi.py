"""./deploy.sh --openapi FILE: an OpenAPI document's paths as RouteTemplates (docs/routes.md)."""

import json
import subprocess
import sys

import pytest

from deployer.errors import ParameterError, UsageError
from deployer.openapi import route_templates
from deployer.options import parse
from deployer.parameters import check_parameters
from tests.conftest import ROOT

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "shop", "version": "1"},
    "servers": [{"url": "https://api.example.com/v1"}],
    "paths": {
        "/users/{id}": {"get": {}},
        "/users/me": {"get": {}},
        "/orders/{order-id}/items/": {"get": {}},
        "/": {"get": {}},
        "/files/{path+}": {"get": {}},
        "/files/readme": {"get": {}},
        "/café": {"get": {}},
    },
}
# Literal segments before parameters before a greedy one, at the first place they differ
EXPECTED = (
    "/,/caf%C3%A9,/users/me,/files/readme,/users/{id},/orders/{order-id}/items,/files/{path+}"
)

YAML = """\
openapi: 3.0.3
info: {title: shop, version: "1"}
paths:
  /users/{id}:
    get: {}
  /users/me:
    get: {}
  /orders/{order-id}/items/:
    get: {}
  /:
    get: {}
  /files/{path+}:
    get: {}
  /files/readme:
    get: {}
  /café:
    get: {}
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_paths_become_templates_literal_ones_first(tmp_path):
    path = write(tmp_path, "openapi.json", json.dumps(DOCUMENT))
    assert route_templates(path) == EXPECTED


def test_a_yaml_document_gives_the_same_templates(tmp_path):
    assert route_templates(write(tmp_path, "openapi.yaml", YAML)) == EXPECTED


def test_the_value_is_one_the_template_and_the_counter_take(tmp_path, template, monkeypatch):
    value = route_templates(write(tmp_path, "openapi.json", json.dumps(DOCUMENT)))
    check_parameters(template, {"RouteTemplates": value})
    monkeypatch.setenv("ROUTE_TEMPLATES", value)
    monkeypatch.setenv("TABLE_NAME", "unused")
    from tests.conftest import load_module

    counter = load_module(ROOT / "handler" / "counter.py", "counter_openapi")
    assert counter.TEMPLATES.refused == []
    named = {p: counter.named_route(counter.route_of(p)[0]) for p in DOCUMENT_PATHS}
    assert named == {
        "/users/me": "/users/me",
        "/users/42": "/users/{id}",
        "/files/readme": "/files/readme",
        "/files/a/b": "/files/{path+}",
        "/caf%c3%a9": "/caf%C3%A9",
        "/orders/9/items/": "/orders/{order-id}/items",
        "/v1/users/42": "/v1/users/42",  # paths as written: no server base path
    }


DOCUMENT_PATHS = [
    "/users/me",
    "/users/42",
    "/files/readme",
    "/files/a/b",
    "/caf%c3%a9",
    "/orders/9/items/",
    "/v1/users/42",
]


def test_deploy_options_set_route_templates_from_the_document(tmp_path):
    path = write(tmp_path, "openapi.yml", YAML)
    assert parse(["--openapi", str(path)], False).params == {"RouteTemplates": EXPECTED}
    with pytest.raises(UsageError, match="not both"):
        parse(["--openapi", str(path), "--param", "RouteTemplates=/x"], False)


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("a.json", "{", "not JSON"),
        ("a.yaml", "paths: [", "not YAML"),
        ("a.json", json.dumps({"swagger": "2.0"}), "no 'paths' object"),
        ("a.json", json.dumps({"paths": {}}), "'paths' object is empty"),
        ("a.json", json.dumps({"paths": {"/f/{name}.json": {}}}), "a whole segment"),
        ("a.json", json.dumps({"paths": {"/a,b": {}}}), "a comma"),
        ("a.json", json.dumps({"paths": {"users": {}}}), "does not start with '/'"),
        ("a.json", json.dumps({"paths": {"/{a b}": {}}}), "cannot be a route template"),
    ],
)
def test_a_document_that_gives_no_templates_is_one_clear_line(tmp_path, name, text, says):
    with pytest.raises(ParameterError, match=says) as raised:
        route_templates(write(tmp_path, name, text))
    assert "\n" not in str(raised.value)


def test_more_than_a_stack_takes_is_refused_with_the_limits(tmp_path):
    paths = {f"/resource-number-{n}/{{id}}": {} for n in range(200)}
    path = write(tmp_path, "big.json", json.dumps({"paths": paths}))
    with pytest.raises(ParameterError, match=r"at most 3,072 .*4,096 bytes per parameter"):
        route_templates(path)


def test_a_missing_file_is_one_line_and_exit_status_2(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "deployer", "--openapi", str(tmp_path / "none.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1
    assert "cannot read it" in run.stderr
