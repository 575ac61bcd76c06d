"""The generated template: structure, deployability and IAM least privilege."""

import json
import re
import subprocess
import sys

from tests.conftest import BIN, ROOT, role_statements


def of_type(resources: dict, kind: str) -> dict:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def statements(role: dict) -> list[dict]:
    return role_statements(role)


def test_generate_prints_the_same_bytes_every_run():
    runs = [
        subprocess.run(
            [sys.executable, "generate.py"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    json.loads(runs[0])


def test_generate_help_documents_itself():
    out = subprocess.run(
        [sys.executable, "generate.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "CloudFormation template" in out.stdout


def test_every_parameter_has_a_default_and_a_description(template):
    for name, parameter in template["Parameters"].items():
        assert "Default" in parameter, name
        assert parameter.get("Description"), name


def test_resources_come_after_what_they_reference(resources):
    """Change-set deploys on emulators create resources in template order."""
    order = list(resources)

    def referenced(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref" and value in resources:
                    yield value
                elif key == "Fn::GetAtt":
                    yield value[0] if isinstance(value, list) else value.split(".")[0]
                elif key == "Fn::Sub" and isinstance(value, (str, list)):
                    text = value if isinstance(value, str) else value[0]
                    for name in resources:
                        if "${" + name + "}" in text or "${" + name + "." in text:
                            yield name
                yield from referenced(value)
        elif isinstance(node, list):
            for item in node:
                yield from referenced(item)

    for name, resource in resources.items():
        for dependency in referenced(resource):
            assert order.index(dependency) < order.index(name), f"{name} before {dependency}"
        for dependency in resource.get("DependsOn", []):
            assert order.index(dependency) < order.index(name), f"{name} before {dependency}"


def test_table_is_keyed_by_route_and_capacity_follows_billing_mode(resources, template):
    table = resources["CounterTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "route", "KeyType": "HASH"}]
    assert table["BillingMode"] == {"Ref": "BillingMode"}
    assert template["Parameters"]["BillingMode"]["Default"] == "PAY_PER_REQUEST"
    assert table["ProvisionedThroughput"]["Fn::If"][0] == "IsProvisioned"
    assert table["ProvisionedThroughput"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert template["Conditions"]["IsProvisioned"] == {
        "Fn::Equals": [{"Ref": "BillingMode"}, "PROVISIONED"]
    }


def test_counter_function_runs_the_handler_file_byte_for_byte(resources):
    function = resources["CounterFunction"]["Properties"]
    source = (ROOT / "handler" / "counter.py").read_text(encoding="utf-8")
    assert function["Code"]["ZipFile"] == source
    assert function["Handler"] == "index.handler"
    assert function["Architectures"] == ["arm64"]
    assert function["Runtime"] >= "python3.13"
    assert function["Environment"]["Variables"]["TABLE_NAME"] == {"Ref": "CounterTable"}


def test_function_answers_before_api_gateway_gives_up(resources):
    # API Gateway's REST integration timeout is 29 s; the handler's own worst case
    # (three 3 s SDK attempts plus backoff) must fit inside the function timeout.
    # With a Backend, its whole answer (BackendTimeoutSeconds, at most 20 s) comes on top.
    condition, with_backend, without = resources["CounterFunction"]["Properties"]["Timeout"][
        "Fn::If"
    ]
    assert condition == "HasBackend"
    assert 12 < without < 29
    assert 20 + 7 < with_backend < 29


def test_functions_log_to_their_own_group_with_retention(resources):
    for name, function in of_type(resources, "AWS::Lambda::Function").items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup", name
        assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_counter_role_may_only_update_items_of_the_table_and_write_its_logs(resources):
    role = resources["CounterFunctionRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    granted = statements(resources["CounterFunctionRole"])
    grants = {tuple(s["Action"]): s["Resource"] for s in granted}
    dynamodb = [
        (s["Action"], s["Resource"], s.get("Condition"))
        for s in granted
        if s["Action"][0].startswith("dynamodb")
    ]
    # MaxRoutes' ledger is a conditional policy of its own (test_template_series.py)
    assert dynamodb == [
        (["dynamodb:UpdateItem"], [{"Fn::GetAtt": ["CounterTable", "Arn"]}], None),
    ]
    assert grants[("logs:CreateLogStream", "logs:PutLogEvents")] == [
        {"Fn::GetAtt": ["CounterLogGroup", "Arn"]}
    ]


def test_api_routes_root_and_every_path_to_the_counter(resources):
    api = resources["CounterApi"]["Properties"]
    assert api["EndpointConfiguration"]["Types"] == ["REGIONAL"]
    methods = of_type(resources, "AWS::ApiGateway::Method")
    by_resource = {
        json.dumps(m["Properties"]["ResourceId"]): m["Properties"] for m in methods.values()
    }
    root = by_resource[json.dumps({"Fn::GetAtt": ["CounterApi", "RootResourceId"]})]
    proxy = by_resource[json.dumps({"Ref": "ProxyResource"})]
    assert resources["ProxyResource"]["Properties"]["PathPart"] == "{proxy+}"
    for method in (root, proxy):
        assert method["HttpMethod"] == "ANY"
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert method["Integration"]["IntegrationHttpMethod"] == "POST"
        assert "CounterFunction" in json.dumps(method["Integration"]["Uri"])


def test_invoke_permission_is_scoped_to_this_api(resources):
    permissions = of_type(resources, "AWS::Lambda::Permission")
    counter = [p for p in permissions.values() if "CounterFunction" in json.dumps(p)]
    assert len(counter) == 1
    props = counter[0]["Properties"]
    assert props["Principal"] == "apigateway.amazonaws.com"
    source = json.dumps(props["SourceArn"])
    assert "execute-api" in source
    assert '"Api": {"Ref": "CounterApi"}' in source


def test_api_changes_make_a_new_deployment(monkeypatch):
    """CloudFormation only redeploys when the Deployment's logical id changes."""
    from generate import build_template
    from templates import api

    def deployment_ids(template) -> set[str]:
        return {
            name
            for name, r in template.to_dict()["Resources"].items()
            if r["Type"] == "AWS::ApiGateway::Deployment"
        }

    before = deployment_ids(build_template())
    original = api.proxy_method

    def with_api_key(*args, **kwargs):
        method = original(*args, **kwargs)
        method.ApiKeyRequired = True
        return method

    monkeypatch.setattr(api, "proxy_method", with_api_key)
    after = deployment_ids(build_template())
    assert len(before) == len(after) == 2  # one per value of RequiresApiKey
    assert not before & after


def test_stage_and_outputs(resources, template):
    stage = next(iter(of_type(resources, "AWS::ApiGateway::Stage").values()))["Properties"]
    assert stage["StageName"] == {"Ref": "StageName"}
    assert template["Parameters"]["StageName"]["Default"] == "prod"
    without_keys, with_keys = of_type(resources, "AWS::ApiGateway::Deployment")
    assert stage["DeploymentId"] == {
        "Fn::If": ["RequiresApiKey", {"Ref": with_keys}, {"Ref": without_keys}]
    }
    assert {"ApiUrl", "TableName", "CounterFunctionName"} <= set(template["Outputs"])


def test_cfn_lint_has_no_findings(tmp_path):
    path = tmp_path / "template.json"
    subprocess.run([sys.executable, "generate.py", "-o", str(path)], cwd=ROOT, check=True)
    lint = subprocess.run(
        [str(BIN / "cfn-lint"), str(path), "--include-checks", "I"],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_rate_limit_parameters_take_exactly_the_whole_numbers_the_function_reads(template):
    """The function int()s both at start-up: a value it cannot read fails every hit."""
    params = template["Parameters"]
    limit = re.compile(params["RateLimit"]["AllowedPattern"])
    window = re.compile(params["RateLimitWindowSeconds"]["AllowedPattern"])

    assert [n for n in range(100_000) if window.fullmatch(str(n))] == list(range(1, 86_401))
    assert all(limit.fullmatch(str(n)) for n in (0, 1, 5, 10**9 - 1))
    for value in ("1.5", "nan", "inf", "-1", "01", "1e3", " 5", "", str(10**9)):
        assert not limit.fullmatch(value) and not window.fullmatch(value), value
    assert params["RateLimit"]["Default"] == "0"
    assert params["RateLimitWindowSeconds"]["Default"] == "60"


def test_reserved_concurrency_reserves_for_the_counter_only(resources, template):
    """Each reservation comes out of the account's pool, which Lambda keeps at 100 or more:
    on three functions a value that fit would reserve three times as much and fail the
    deploy. The counter is the one whose capacity loses hits when short."""
    reserving = {
        name: r["Properties"]["ReservedConcurrentExecutions"]
        for name, r in of_type(resources, "AWS::Lambda::Function").items()
        if "ReservedConcurrentExecutions" in r["Properties"]
    }
    assert reserving == {
        "CounterFunction": {
            "Fn::If": [
                "HasReservedConcurrency",
                {"Ref": "ReservedConcurrency"},
                {"Ref": "AWS::NoValue"},
            ]
        }
    }
    assert "counter function" in template["Parameters"]["ReservedConcurrency"]["Description"]


# The parameters the functions int() at start-up or whose properties take only integers
# (Lambda MemorySize, DynamoDB and auto scaling capacities, API Gateway's burst, log days).
WHOLE_NUMBERS = {
    "ReadCapacityUnits": (1, 999_999_999),
    "WriteCapacityUnits": (1, 999_999_999),
    "MaxReadCapacityUnits": (1, 999_999_999),
    "MaxWriteCapacityUnits": (1, 999_999_999),
    "FunctionMemorySize": (128, 10240),
    "RateLimit": (0, 999_999_999),
    "RateLimitWindowSeconds": (1, 86400),
    "ThrottlingBurstLimit": (1, 999_999_999),
    "SeriesHourlyDays": (1, 3650),
    "BackendTimeoutSeconds": (1, 20),
    "MaxRoutes": (0, 999_999_999),
    "AggregatorBatchSize": (1, 10000),
    "AggregatorBatchingWindowSeconds": (0, 300),
}


def test_every_parameter_the_code_needs_whole_takes_exactly_whole_numbers(template):
    """A Number parameter takes 1.5 and 1e2 whatever its MinValue/MaxValue: SeriesHourlyDays
    =1.5 deployed, then every batch failed. Those that must be whole are text with a
    pattern of exactly low..high; the two Numbers left take fractions where they go
    (auto scaling's TargetValue and API Gateway's RateLimit are doubles), and
    LogRetentionDays takes only its listed values."""
    params = template["Parameters"]
    numbers = {name for name, p in params.items() if p["Type"] == "Number"}
    assert numbers == {"TargetUtilizationPercent", "ThrottlingRateLimit", "LogRetentionDays"}
    for name, (low, high) in WHOLE_NUMBERS.items():
        pattern = re.compile(params[name]["AllowedPattern"])
        assert params[name]["Type"] == "String", name
        assert pattern.fullmatch(params[name]["Default"]), name
        for value in (low, high, (low + high) // 2):
            assert pattern.fullmatch(str(value)), (name, value)
        for value in ("1.5", "1e2", f"{low}.0", f"0{low}", str(low - 1), str(high + 1), " 5"):
            assert not pattern.fullmatch(value), (name, value)
    # LogRetentionDays is whole by its AllowedValues (the deployer compares them as text)
    assert all(isinstance(days, int) for days in params["LogRetentionDays"]["AllowedValues"])


def test_range_patterns_match_exactly_the_numbers_of_their_range():
    from templates.parameters import range_pattern

    for low, high in [(0, 0), (1, 9), (1, 86400), (128, 10240), (1, 3650), (19, 21), (99, 101)]:
        pattern = re.compile(range_pattern(low, high))
        assert [n for n in range(0, 100_000) if pattern.fullmatch(str(n))] == list(
            range(low, min(high, 99_999) + 1)
        ), (low, high)
