"""PrivateStats: the stats token, kept in Secrets Manager, and who may read it.

The template holds no token: CloudFormation has Secrets Manager generate it
(GenerateSecretString), the stats function reads it with GetSecretValue on this one secret,
and ./deploy.sh --stats-token prints it for its owner (docs/security-private-stats.md).
"""

from awacs import secretsmanager
from troposphere import If, NoValue, Output, Ref
from troposphere.iam import PolicyType, Role
from troposphere.secretsmanager import GenerateSecretString, Secret

from templates import iam
from templates.parameters import StackParameters

# 40 letters and digits: about 238 bits, and nothing a shell, a URL or Basic's user:password
# split would need to escape.
TOKEN_LENGTH = 40


def stats_token_secret(params: StackParameters) -> Secret:
    """The token, only when the stats are private; encrypted with KmsKeyArn when one is
    given, else with the account's aws/secretsmanager key."""
    return Secret(
        "StatsTokenSecret",
        Condition=params.stats_are_private,
        DeletionPolicy="Delete",
        UpdateReplacePolicy="Delete",
        Description="Route Counter: the token that reads the private stats and dashboard.",
        GenerateSecretString=GenerateSecretString(
            PasswordLength=TOKEN_LENGTH, ExcludePunctuation=True
        ),
        KmsKeyId=If(params.has_kms_key, Ref(params.kms_key_arn), NoValue),
        Metadata={
            "checkov": {
                "skip": [
                    {
                        "id": "CKV_AWS_149",
                        "comment": "KmsKeyArn when set (Fn::If), else aws/secretsmanager",
                    },
                    {
                        "id": "CKV2_AWS_57",
                        "comment": "Rotated by its owner (docs/security-private-stats.md): "
                        "a bearer token has no rotation Lambda to call",
                    },
                ]
            }
        },
    )


def read_token_policy(role: Role, secret: Secret, params: StackParameters) -> PolicyType:
    """The stats function may read exactly this secret's value, nothing else of Secrets
    Manager. No kms statement: the aws/secretsmanager key lets any principal of the account
    that may call Secrets Manager decrypt through it; with KmsKeyArn, UseKmsKeyPolicy already
    grants the stats role kms:Decrypt on that key, which GetSecretValue needs."""
    return iam.conditional_policy(
        "ReadStatsTokenPolicy",
        params.stats_are_private,
        role,
        iam.allow("ReadStatsToken", [secretsmanager.GetSecretValue], Ref(secret)),
        name="read-stats-token",
    )


def secret_arn_variable(secret: Secret, params: StackParameters) -> If:
    """STATS_TOKEN_SECRET: the secret's ARN (not the token) when private, else empty."""
    return If(params.stats_are_private, Ref(secret), "")


def outputs(secret: Secret, params: StackParameters) -> list[Output]:
    return [
        Output(
            "StatsTokenSecretArn",
            Condition=params.stats_are_private,
            Description="The stats are private: ./deploy.sh --stats-token prints the token "
            "kept in this secret",
            Value=Ref(secret),
        )
    ]
