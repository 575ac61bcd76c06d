"""--openapi FILE: the path templates of the user's OpenAPI (or Swagger 2) document, as the
RouteTemplates value (docs/routes.md, "From an OpenAPI document").

The `paths` keys are taken as written: relative to the counter's stage, as its clients send
them. A server URL's or a Swagger basePath's own prefix is not added (it is where the API is
served, which the counter does not know: a backend URL's path, a custom domain's mapping).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

from deployer.errors import ParameterError
from templates.parameters import MAX_ROUTE_TEMPLATES_BYTES, ROUTE_TEMPLATE

PARAMETER = re.compile(r"\{[^{}/]*\}")
# What a literal segment keeps unescaped: route_of's characters but the list's comma.
LITERAL_SAFE = "-._~!$&'()*+;=:@"


def route_templates(path: Path) -> str:
    """The RouteTemplates value of the OpenAPI document at path: one ParameterError line
    saying what is wrong otherwise."""
    where = f"--openapi {path}"
    paths = read_paths(path, where)
    templates: list[str] = []
    for key in paths:
        template = template_of(key, where)
        if template not in templates:
            templates.append(template)
    templates.sort(key=specificity)  # stable: the document's order among equals
    value = ",".join(templates)
    if len(value.encode()) > MAX_ROUTE_TEMPLATES_BYTES:
        raise ParameterError(
            f"{where}: its {len(templates)} paths make a RouteTemplates value of "
            f"{len(value.encode()):,} bytes; a stack takes at most {MAX_ROUTE_TEMPLATES_BYTES:,} "
            "(CloudFormation: 4,096 bytes per parameter value; Lambda: 4 KB for all of a "
            "function's environment variables)"
        )
    return value


def read_paths(path: Path, where: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or "not UTF-8 text"  # the system's words
        raise ParameterError(f"{where}: cannot read it ({why})") from None
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ParameterError(f"{where}: not JSON ({error})") from None
    else:
        import yaml  # PyYAML: already installed, cfn-lint needs it (requirements.txt)

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problem = " ".join(str(error).split())
            raise ParameterError(f"{where}: not YAML ({problem})") from None
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise ParameterError(f"{where}: no 'paths' object: not an OpenAPI or Swagger document")
    if not document["paths"]:
        raise ParameterError(f"{where}: its 'paths' object is empty")
    return document["paths"]


def template_of(key: object, where: str) -> str:
    """A `paths` key as a template: trailing slash dropped, literals escaped as route_of
    escapes a path; a parameter must be a whole segment."""
    if not isinstance(key, str) or not key.startswith("/"):
        raise ParameterError(f"{where}: path {key!r} does not start with '/'")
    segments = [s for s in key.split("/") if s]
    written = []
    for segment in segments:
        if PARAMETER.fullmatch(segment):
            written.append(segment)
        elif "{" in segment or "}" in segment:
            raise ParameterError(
                f"{where}: path {key!r}: a parameter must be a whole segment "
                f"({segment!r} mixes one with text); list a template for it by hand"
            )
        elif "," in segment:
            raise ParameterError(f"{where}: path {key!r}: a comma cannot be in a template")
        else:
            # RFC 3986 6.2.2 as the counter normalises a path: escapes in upper case,
            # unreserved characters never escaped.
            literal = urllib.parse.unquote(segment, errors="strict")
            written.append(urllib.parse.quote(literal, safe=LITERAL_SAFE))
    template = "/" + "/".join(written)
    if not re.fullmatch(ROUTE_TEMPLATE, template):
        raise ParameterError(f"{where}: path {key!r} cannot be a route template ({template})")
    return template


def specificity(template: str) -> tuple[int, ...]:
    """Sort key: at the first segment where two templates differ in kind, a literal comes
    before a parameter, and a parameter before a greedy {name+}."""
    return tuple(
        (2 if segment.endswith("+}") else 1) if segment.startswith("{") else 0
        for segment in template.split("/")[1:]
        if segment
    )
