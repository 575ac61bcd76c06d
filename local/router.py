"""The template's own API Gateway resource/method tree, matched as API Gateway does.

Nothing is hard-coded: resources, path parts, methods and the function behind each
method's AWS_PROXY integration are read from the CloudFormation template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from deployer.template_reading import TemplateError, condition_holds, parameter_values, ref_name

ROOT = "/"
SUPPORTED_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


@dataclass
class Method:
    logical_id: str
    http_method: str  # GET, POST, ... or ANY
    integration_type: str
    function: str | None  # logical id of the AWS::Lambda::Function behind an AWS_PROXY
    api_key_required: bool = False  # its ApiKeyRequired, as deployed with the parameters


@dataclass
class ApiResource:
    logical_id: str | None  # None for the API's root resource
    path_part: str
    path: str  # the full resource path, as API Gateway's `resource` field shows it
    children: list[ApiResource] = field(default_factory=list)
    methods: dict[str, Method] = field(default_factory=dict)

    @property
    def greedy(self) -> bool:
        return bool(re.fullmatch(r"\{[^{}]+\+\}", self.path_part))

    @property
    def param(self) -> str | None:
        """The path parameter name of a `{name}` or `{name+}` part, else None."""
        found = re.fullmatch(r"\{([^{}+]+)\+?\}", self.path_part)
        return found.group(1) if found else None


@dataclass
class Match:
    resource: ApiResource
    method: Method | None  # None: the resource exists but has no such method
    path_parameters: dict[str, str] | None


def _is_root_ref(value: object) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"Fn::GetAtt"}
        and isinstance(value["Fn::GetAtt"], list)
        and value["Fn::GetAtt"][1:] == ["RootResourceId"]
    ) or (
        isinstance(value, dict)
        and set(value) == {"Fn::GetAtt"}
        and isinstance(value["Fn::GetAtt"], str)
        and value["Fn::GetAtt"].endswith(".RootResourceId")
    )


def integration_function(uri: object, functions: set[str]) -> str | None:
    """The logical id of the Lambda function an integration Uri invokes.

    The Uri is usually Fn::Sub ".../functions/${FunctionArn}/invocations" with FunctionArn
    bound to GetAtt(Function, Arn), but any shape naming one function's Arn (Sub with
    "${Function.Arn}", Fn::Join with a GetAtt, ...) is understood.
    """
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            getatt = node.get("Fn::GetAtt")
            if isinstance(getatt, list) and len(getatt) == 2 and getatt[1] == "Arn":
                found.append(getatt[0])
            elif isinstance(getatt, str) and getatt.endswith(".Arn"):
                found.append(getatt[: -len(".Arn")])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            found.extend(re.findall(r"\$\{([A-Za-z0-9]+)\.Arn\}", node))

    walk(uri)
    names = [name for name in found if name in functions]
    return names[0] if names else None


class Router:
    """API Gateway REST routing over the template's AWS::ApiGateway::Resource tree."""

    def __init__(
        self,
        template: dict,
        api_logical_id: str | None = None,
        parameters: dict[str, str] | None = None,
    ) -> None:
        resources = template.get("Resources", {})
        # A PathPart may be a parameter (StatsPath): the given value, else its default.
        self.parameters = parameter_values(template, parameters or {})
        apis = [k for k, v in resources.items() if v.get("Type") == "AWS::ApiGateway::RestApi"]
        if api_logical_id is None:
            if len(apis) != 1:
                raise TemplateError(f"expected one AWS::ApiGateway::RestApi, found {apis}")
            api_logical_id = apis[0]
        self.api_logical_id = api_logical_id
        functions = {k for k, v in resources.items() if v.get("Type") == "AWS::Lambda::Function"}
        self.root = ApiResource(None, "", ROOT)
        self.resources: dict[str | None, ApiResource] = {None: self.root}
        self.methods: list[Method] = []

        of_api = {
            k: v
            for k, v in resources.items()
            if ref_name(v.get("Properties", {}).get("RestApiId")) == api_logical_id
        }
        declared = {k: v for k, v in of_api.items() if v["Type"] == "AWS::ApiGateway::Resource"}
        for logical_id in declared:
            self._resource(logical_id, declared, set())
        for logical_id, value in of_api.items():
            if value["Type"] != "AWS::ApiGateway::Method":
                continue
            props = value["Properties"]
            if _is_root_ref(props.get("ResourceId")):
                resource = self.root
            else:
                target = ref_name(props.get("ResourceId"))
                if target not in declared:
                    raise TemplateError(f"{logical_id}: ResourceId is not a resource of the API")
                resource = self.resources[target]
            integration = props.get("Integration", {})
            method = Method(
                logical_id=logical_id,
                http_method=str(props.get("HttpMethod", "")).upper(),
                integration_type=str(integration.get("Type", "")),
                function=integration_function(integration.get("Uri"), functions),
                api_key_required=self._flag(template, props.get("ApiKeyRequired", False)),
            )
            resource.methods[method.http_method] = method
            self.methods.append(method)

    def _resource(self, logical_id: str, declared: dict, seen: set[str]) -> ApiResource:
        if logical_id in self.resources:
            return self.resources[logical_id]
        if logical_id in seen:
            raise TemplateError(f"{logical_id}: resource cycle")
        props = declared[logical_id]["Properties"]
        parent_ref = props.get("ParentId")
        if _is_root_ref(parent_ref):
            parent = self.root
        else:
            target = ref_name(parent_ref)
            if target not in declared:
                raise TemplateError(f"{logical_id}: ParentId is not a resource of the API")
            parent = self._resource(target, declared, seen | {logical_id})
        part = self._path_part(logical_id, props["PathPart"])
        path = f"/{part}" if parent is self.root else f"{parent.path}/{part}"
        resource = ApiResource(logical_id, part, path)
        parent.children.append(resource)
        self.resources[logical_id] = resource
        return resource

    def _flag(self, template: dict, value: object) -> bool:
        """A boolean property: true, "true", or an Fn::If of the template's conditions."""
        if isinstance(value, dict) and set(value) == {"Fn::If"}:
            condition, when_true, when_false = value["Fn::If"]
            holds = condition_holds(template, condition, self.parameters)
            return self._flag(template, when_true if holds else when_false)
        return value is True or str(value).lower() == "true"

    def _path_part(self, logical_id: str, value: object) -> str:
        if isinstance(value, str):
            return value
        name = ref_name(value)
        if name in self.parameters:
            return self.parameters[name]
        raise TemplateError(f"{logical_id}: PathPart must be a string or a parameter's Ref")

    def functions(self) -> set[str]:
        return {m.function for m in self.methods if m.function}

    def match(self, method: str, raw_path: str) -> Match | None:
        """The resource and method a request reaches, or None when no resource matches.

        raw_path is the request path as sent (percent-encoded). Precedence at each level:
        a literal path part, then a `{param}` part, then a greedy `{param+}` part.
        Path parameter values are percent-decoded, as API Gateway passes them.
        """
        path = raw_path.split("?", 1)[0]
        segments = [part for part in path.split("/") if part]
        found = self._walk(self.root, segments, 0, {})
        if found is None:
            return None
        resource, params = found
        chosen = resource.methods.get(method.upper()) or resource.methods.get("ANY")
        return Match(resource, chosen, params or None)

    def _walk(
        self, node: ApiResource, segments: list[str], index: int, params: dict[str, str]
    ) -> tuple[ApiResource, dict[str, str]] | None:
        if index == len(segments):
            return node, params
        segment = segments[index]
        decoded = unquote(segment)
        literal = [c for c in node.children if c.param is None]
        named = [c for c in node.children if c.param is not None and not c.greedy]
        greedy = [c for c in node.children if c.greedy]
        for child in literal:
            if child.path_part == decoded:
                hit = self._walk(child, segments, index + 1, params)
                if hit:
                    return hit
        for child in named:
            hit = self._walk(child, segments, index + 1, {**params, child.param: decoded})
            if hit:
                return hit
        for child in greedy:
            return child, {**params, child.param: unquote("/".join(segments[index:]))}
        return None
