"""The local API routes requests by the template's own resource/method tree, as API Gateway."""

import copy

import pytest

from local.router import Router, TemplateError, integration_function


def with_report(template: dict) -> dict:
    """The template plus GET /_report answered by a third function, and /_report/{route}."""
    extended = copy.deepcopy(template)
    resources = extended["Resources"]
    stats = copy.deepcopy(resources["CounterFunction"])
    resources["ReportFunction"] = stats
    resources["ReportResource"] = {
        "Type": "AWS::ApiGateway::Resource",
        "Properties": {
            "RestApiId": {"Ref": "CounterApi"},
            "ParentId": {"Fn::GetAtt": ["CounterApi", "RootResourceId"]},
            "PathPart": "_report",
        },
    }
    stats_method = copy.deepcopy(resources["ProxyMethod"])
    stats_method["Properties"]["ResourceId"] = {"Ref": "ReportResource"}
    stats_method["Properties"]["HttpMethod"] = "GET"
    uri = stats_method["Properties"]["Integration"]["Uri"]["Fn::Sub"]
    uri[1]["FunctionArn"] = {"Fn::GetAtt": ["ReportFunction", "Arn"]}
    resources["ReportMethod"] = stats_method
    # and a {param} level: /_report/{route}
    resources["ReportRouteResource"] = {
        "Type": "AWS::ApiGateway::Resource",
        "Properties": {
            "RestApiId": {"Ref": "CounterApi"},
            "ParentId": {"Ref": "ReportResource"},
            "PathPart": "{route}",
        },
    }
    route_method = copy.deepcopy(stats_method)
    route_method["Properties"]["ResourceId"] = {"Ref": "ReportRouteResource"}
    resources["ReportRouteMethod"] = route_method
    return extended


def test_root_goes_to_the_counter_with_no_path_parameters(template):
    match = Router(template).match("GET", "/")

    assert match.resource.path == "/"
    assert match.method.function == "CounterFunction"
    assert match.path_parameters is None


@pytest.mark.parametrize(
    ("path", "proxy"),
    [("/hello", "hello"), ("/a/b/c", "a/b/c"), ("/a/b%20c", "a/b c"), ("/caf%C3%A9", "café")],
)
def test_any_nested_path_goes_to_the_greedy_proxy(template, path, proxy):
    match = Router(template).match("DELETE", path)

    assert match.resource.path == "/{proxy+}"
    assert match.method.http_method == "ANY"
    assert match.method.function == "CounterFunction"
    assert match.path_parameters == {"proxy": proxy}


def test_a_specific_resource_beats_the_greedy_proxy(template):
    router = Router(with_report(template))

    report = router.match("GET", "/_report")
    other = router.match("GET", "/_reporting")

    assert (report.resource.path, report.method.function) == ("/_report", "ReportFunction")
    assert report.path_parameters is None
    assert (other.resource.path, other.method.function) == ("/{proxy+}", "CounterFunction")


def test_a_param_part_beats_the_greedy_proxy_and_deeper_paths_fall_back(template):
    router = Router(with_report(template))

    one = router.match("GET", "/_report/hello%20world")
    deeper = router.match("GET", "/_report/a/b")

    assert one.resource.path == "/_report/{route}"
    assert one.path_parameters == {"route": "hello world"}
    assert deeper.resource.path == "/{proxy+}"
    assert deeper.path_parameters == {"proxy": "_report/a/b"}


def test_a_method_the_resource_does_not_define_matches_no_method(template):
    match = Router(with_report(template)).match("POST", "/_report")

    assert match.resource.path == "/_report"
    assert match.method is None


def test_no_resource_matches_when_the_template_has_no_greedy_proxy(template):
    trimmed = copy.deepcopy(template)
    for name in ("ProxyResource", "ProxyMethod"):
        del trimmed["Resources"][name]

    router = Router(trimmed)

    assert router.match("GET", "/hello") is None
    assert router.match("GET", "/").method.function == "CounterFunction"


def test_the_functions_behind_the_api_come_from_the_integration_uris(template):
    assert Router(template).functions() == {"CounterFunction", "StatsFunction"}
    assert Router(with_report(template)).functions() == {
        "CounterFunction",
        "StatsFunction",
        "ReportFunction",
    }


def test_a_path_part_set_by_a_parameter_routes_by_its_deployed_value(template):
    default = Router(template)
    renamed = Router(template, parameters={"StatsPath": "metrics"})

    assert default.match("GET", "/_stats").method.function == "StatsFunction"
    assert default.match("GET", "/_stats/x").resource.path == "/_stats/{proxy+}"
    assert renamed.match("GET", "/metrics").method.function == "StatsFunction"
    assert renamed.match("GET", "/_stats").method.function == "CounterFunction"


@pytest.mark.parametrize(
    "uri",
    [
        {"Fn::Sub": "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations"},
        {"Fn::Join": ["", ["arn:...:functions/", {"Fn::GetAtt": ["Fn", "Arn"]}, "/invocations"]]},
        {"Fn::Sub": ["...${X}/invocations", {"X": {"Fn::GetAtt": "Fn.Arn"}}]},
    ],
)
def test_integration_uri_shapes_name_the_function(uri):
    assert integration_function(uri, {"Fn", "Other"}) == "Fn"


def test_a_method_on_a_resource_of_another_shape_is_refused(template):
    broken = copy.deepcopy(template)
    broken["Resources"]["ProxyMethod"]["Properties"]["ResourceId"] = {"Ref": "Nowhere"}

    with pytest.raises(TemplateError, match="ProxyMethod"):
        Router(broken)


def test_conditions_are_evaluated_as_cloudformation_does_select_and_split_included(template):
    """HasLambdaBackend reads the Backend's text before its first ':' (Fn::Select of an
    Fn::Split): true for a function ARN, false for a URL or nothing."""
    from deployer.template_reading import condition_holds

    arn = "arn:aws:lambda:us-east-1:123456789012:function:api"
    assert condition_holds(template, "HasLambdaBackend", {"Backend": arn})
    assert not condition_holds(template, "HasLambdaBackend", {"Backend": "http://127.0.0.1:8000"})
    assert not condition_holds(template, "HasLambdaBackend", {})
    assert condition_holds(template, "HasSeriesTable", {"Analytics": "off", "MaxRoutes": "5"})
    assert not condition_holds(template, "HasSeriesTable", {"Analytics": "off"})
