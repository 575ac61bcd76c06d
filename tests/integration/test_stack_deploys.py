"""The template deploys through a CloudFormation change set (AWS CLI against moto_server).

moto 5.2.5 creates resources in template order, ignores DependsOn, skips the types it does
not model (Stage, Account, Alarm, Subscription), ignores Lambda KmsKeyArn/TracingConfig and
a role's ManagedPolicyArns, and deletes RetainExceptOnCreate resources on stack delete;
what it does create must all be CREATE_COMPLETE, with defaults and with every option set.
"""

import json
import subprocess
import uuid

from tests.conftest import BIN


def aws(endpoint: str, *args: str) -> dict:
    out = subprocess.run(
        [str(BIN / "aws"), "--endpoint-url", endpoint, "--output", "json", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return json.loads(out) if out.strip() else {}


def deploy(endpoint: str, tmp_path, template: dict, parameters: dict) -> str:
    body = tmp_path / "template.json"
    body.write_text(json.dumps(template))
    stack = f"rc-{uuid.uuid4().hex[:8]}"
    params = [f"ParameterKey={k},ParameterValue={v}" for k, v in parameters.items()]
    aws(
        endpoint,
        "cloudformation",
        "create-change-set",
        "--stack-name",
        stack,
        "--change-set-name",
        "create",
        "--change-set-type",
        "CREATE",
        "--capabilities",
        "CAPABILITY_IAM",
        "--template-body",
        body.as_uri(),
        *(["--parameters", *params] if params else []),
    )
    aws(endpoint, "cloudformation", "wait", "change-set-create-complete",
        "--stack-name", stack, "--change-set-name", "create")  # fmt: skip
    aws(endpoint, "cloudformation", "execute-change-set",
        "--stack-name", stack, "--change-set-name", "create")  # fmt: skip
    aws(endpoint, "cloudformation", "wait", "stack-create-complete", "--stack-name", stack)
    return stack


def resources_of(endpoint: str, stack: str) -> dict:
    summaries = aws(endpoint, "cloudformation", "list-stack-resources", "--stack-name", stack)
    return {
        r["LogicalResourceId"]: r
        for r in summaries["StackResourceSummaries"]
        if r["LogicalResourceId"]  # moto lists the types it skipped without an id
    }


def test_defaults_deploy_every_modelled_resource(moto_server, tmp_path, template):
    stack = deploy(moto_server, tmp_path, template, {})

    created = resources_of(moto_server, stack)
    assert {r["ResourceStatus"] for r in created.values()} == {"CREATE_COMPLETE"}
    for name in [
        "CounterTable",
        "CounterFunction",
        "CounterFunctionRole",
        "ApiAccessLogGroup",
        "ApiGatewayCloudWatchRole",
        "AlarmTopic",
        "Dashboard",
    ]:
        assert name in created
    table = created["CounterTable"]["PhysicalResourceId"]
    described = aws(moto_server, "dynamodb", "describe-table", "--table-name", table)["Table"]
    # Off while the stack is created: a protected table would block a failed create's
    # rollback (deploy.sh turns it on once the stack exists).
    assert described["DeletionProtectionEnabled"] is False


def test_deleting_the_stack_keeps_the_role_the_account_setting_names(
    moto_server, tmp_path, template
):
    stack = deploy(moto_server, tmp_path, template, {})
    role = resources_of(moto_server, stack)["ApiGatewayCloudWatchRole"]["PhysicalResourceId"]

    aws(moto_server, "cloudformation", "delete-stack", "--stack-name", stack)
    aws(moto_server, "cloudformation", "wait", "stack-delete-complete", "--stack-name", stack)

    kept = aws(moto_server, "iam", "get-role", "--role-name", role)["Role"]
    assert kept["RoleName"] == role


def test_every_option_set_deploys(moto_server, tmp_path, template):
    key = aws(moto_server, "kms", "create-key")["KeyMetadata"]["Arn"]

    stack = deploy(
        moto_server,
        tmp_path,
        template,
        {
            "KmsKeyArn": key,
            "AlarmEmail": "ops@example.com",
            "ReservedConcurrency": "5",
            "ApiGatewayAccountRole": "none",
            "ThrottlingRateLimit": "10",
            "ThrottlingBurstLimit": "20",
            "TableDeletionProtection": "true",
        },
    )

    created = resources_of(moto_server, stack)
    assert {r["ResourceStatus"] for r in created.values()} == {"CREATE_COMPLETE"}
    assert "ApiAccessLogGroup" not in created
    assert "ApiGatewayCloudWatchRole" not in created
    function = created["CounterFunction"]["PhysicalResourceId"]
    concurrency = aws(moto_server, "lambda", "get-function-concurrency",
                      "--function-name", function)  # fmt: skip
    assert concurrency["ReservedConcurrentExecutions"] == 5
    role = created["CounterFunctionRole"]["PhysicalResourceId"]
    policies = aws(moto_server, "iam", "list-role-policies", "--role-name", role)
    assert sorted(policies["PolicyNames"]) == ["least-privilege", "use-kms-key"]
    table = created["CounterTable"]["PhysicalResourceId"]
    described = aws(moto_server, "dynamodb", "describe-table", "--table-name", table)["Table"]
    assert described["DeletionProtectionEnabled"] is True


def test_a_lambda_backend_deploys_with_its_exact_grant_timeout_and_binary_types(
    moto_server, tmp_path, template
):
    backend = "arn:aws:lambda:us-east-1:123456789012:function:orders-api:live"

    stack = deploy(moto_server, tmp_path, template, {"Backend": backend})

    created = resources_of(moto_server, stack)
    assert {r["ResourceStatus"] for r in created.values()} == {"CREATE_COMPLETE"}
    assert "InvokeBackendPolicy" in created  # (moto models no alarm nor metric filter)
    role = created["CounterFunctionRole"]["PhysicalResourceId"]
    granted = aws(moto_server, "iam", "get-role-policy", "--role-name", role,
                  "--policy-name", "invoke-backend")["PolicyDocument"]  # fmt: skip
    assert granted["Statement"][0]["Resource"] == [backend]
    assert granted["Statement"][0]["Action"] == ["lambda:InvokeFunction"]
    function = created["CounterFunction"]["PhysicalResourceId"]
    config = aws(moto_server, "lambda", "get-function-configuration", "--function-name", function)
    assert config["Timeout"] == 28
    assert config["Environment"]["Variables"]["BACKEND"] == backend
    api = aws(moto_server, "apigateway", "get-rest-api", "--rest-api-id",
              created["CounterApi"]["PhysicalResourceId"])  # fmt: skip
    assert api["binaryMediaTypes"] == ["*/*"]
