"""AWS or an emulator: a call the emulator lacks is a warning there, an error against AWS."""

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from deployer.endpoint import is_aws, lacks_operation
from deployer.errors import DeployError
from tests.unit.test_deploy_flow import account, deploy  # noqa: F401 (a fixture)

LOCALSTACK_LACKS = (
    b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error>'
    b"<Type>Sender</Type><Code>InternalFailure</Code><Message>API action 'SetStackPolicy' "
    b"for service 'cloudformation' not yet implemented or pro feature</Message></Error>"
    b"<RequestId>1</RequestId></ErrorResponse>"
)


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: object):
        return iter([self.data])


@pytest.mark.parametrize(
    ("endpoint", "aws"),
    [
        ("https://cloudformation.eu-west-1.amazonaws.com", True),
        ("https://cloudformation.cn-north-1.amazonaws.com.cn", True),
        ("https://s3.dualstack.us-east-1.api.aws", True),
        ("http://localhost:4566", False),
        ("https://localhost.localstack.cloud:4566", False),
        ("https://127.0.0.1:5000", False),
        ("https://amazonaws.com.example.org", False),
        ("https://notamazonaws.com", False),
    ],
)
def test_only_aws_domains_are_aws(endpoint, aws):
    assert is_aws(endpoint) is aws


def test_a_refused_stack_policy_from_aws_stays_an_error(account, monkeypatch):  # noqa: F811
    """In-process moto answers for AWS's own endpoint (no AWS_ENDPOINT_URL); the answer an
    emulator gives for a call it lacks, coming from AWS, is a failure, not a gap."""
    import boto3

    refused = []

    def refuse(request, **_):
        refused.append(request.url)
        return AWSResponse(request.url, 501, {}, Body(LOCALSTACK_LACKS))

    real_session = boto3.Session

    def session(*args, **kwargs):
        made = real_session(*args, **kwargs)
        made.events.register_first("before-send.cloudformation.SetStackPolicy", refuse)
        return made

    monkeypatch.setattr(boto3, "Session", session)

    with pytest.raises(DeployError) as failed:
        deploy()

    assert refused and refused[0].startswith("https://cloudformation.us-east-1.amazonaws.com")
    assert str(failed.value).startswith("set-stack-policy: An error occurred (InternalFailure)")


def test_only_not_implemented_answers_are_gaps():
    def error(status: int, code: str) -> ClientError:
        return ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "X"
        )

    assert lacks_operation(error(501, "Whatever"))
    assert lacks_operation(error(500, "InternalFailure"))
    assert not lacks_operation(error(403, "AccessDenied"))
    assert not lacks_operation(error(400, "ValidationError"))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--emulator", "--delete", "--yes"], "takes no --delete or --stats-token"),
        (["--emulator", "--stats-token"], "takes no --delete or --stats-token"),
        (["--emulator", "--profile", "work"], "uses fake credentials: it takes no --profile"),
    ],
)
def test_a_rehearsal_refuses_what_an_emulator_that_starts_empty_cannot_do(argv, says, capsys):
    from deployer import cli

    assert cli.main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --emulator ") and says in line
