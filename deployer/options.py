"""./deploy.sh's options: parsed, checked, and the --help text.

Each bad command line is one UsageError (exit status 2) naming what is wrong.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from deployer.errors import PROG, Refused, UsageError

DEFAULT_STACK = "route-counter"

USAGE = """\
Usage: ./deploy.sh [--stack-name NAME] [--region R] [--profile P] [--param Key=Value]...
                   [--openapi FILE] [--s3-bucket B] [--dry-run] [--no-smoke]
       ./deploy.sh --delete [--yes] [--stack-name NAME] [--region R] [--profile P]
       ./deploy.sh --stats-token [--stack-name NAME] [--region R] [--profile P]
       ./deploy.sh --local [--port N] [--param Key=Value]... [--openapi FILE] [--stack-name NAME]
       ./deploy.sh keys create NAME | list | revoke ID [--stack-name NAME] [--region R]
                   [--profile P] [--local]   (ClientIdentity apikey: docs/clients.md)
       ./deploy.sh --emulator [--stack-name NAME] [--region R] [--param Key=Value]... [--dry-run]

Generates the Route Counter template (python generate.py), lints it (cfn-lint), creates
or updates the CloudFormation stack through a change set while showing its events, sets
a stack policy that protects both tables, prints the outputs (ApiUrl...) and
smoke-tests the API (two requests to a fresh path must count 1, then 2).

Options:
  --stack-name NAME   stack name (default: route-counter)
  --region R          AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's)
  --profile P         AWS CLI profile
  --param Key=Value   set a template parameter (repeatable). Unset parameters take the
                      template default on create and keep their current value on update
  --openapi FILE      count routes as your OpenAPI document (JSON or YAML) names them: its
                      paths become RouteTemplates, literal ones before templated ones
                      (docs/routes.md)
  --s3-bucket B       upload the template to S3 bucket B (yours, in the stack's region)
                      and deploy it from there. Without it, a template over the 51,200
                      bytes CloudFormation takes inline goes through this account's own
                      deployment bucket (route-counter-deploy-ACCOUNT-REGION, created once)
  --dry-run           create a change set, print what would change, then delete it
  --no-smoke          skip the smoke test
  --delete            delete the stack; the tables are kept (RetainExceptOnCreate)
  --yes               with --delete: do not ask for confirmation (needed without a terminal)
  --stats-token       print the token of private stats (PrivateStats) on stdout, and nothing
                      else there: the password of the dashboard (any user name), or
                      'Authorization: Bearer TOKEN' (docs/security-private-stats.md)
  --emulator          rehearse the deploy with no AWS account: start an emulator
                      (moto_server over TLS on 127.0.0.1, a free port), deploy to it as
                      to AWS, print its endpoint, stop it (docs/deploying.md)
  --local [ARGS...]   run the API locally instead: every other argument goes to
                      'python -m local' (e.g. --port, --param, --stack-name)
  --port N            with --local: local port to listen on
  -h, --help          show this help

Environment:
  AWS_ENDPOINT_URL    send every AWS call there (e.g. a moto_server); skips the smoke test;
                      a call such an emulator lacks (SetStackPolicy) is a warning there
  AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...  as for the AWS CLI

Exit status: 0 done (also when there was nothing to change), 1 failed, 2 bad usage."""

VALUE_OPTIONS = ("--stack-name", "--region", "--profile", "--param", "--s3-bucket", "--openapi")
FLAGS = {
    "--dry-run": "dry_run",
    "--delete": "delete",
    "--yes": "yes",
    "--stats-token": "stats_token",
    "--emulator": "emulator",
}


def _parser() -> argparse.ArgumentParser:
    """The options of USAGE (which is the --help text: argparse's own help is off). Errors
    are raised (exit_on_error=False), turned into UsageError lines by parse()."""
    parser = argparse.ArgumentParser(
        prog=PROG, add_help=False, allow_abbrev=False, exit_on_error=False
    )
    for option in VALUE_OPTIONS:
        repeated = option == "--param"
        parser.add_argument(option, action="append" if repeated else "store")
    for flag, name in FLAGS.items():
        parser.add_argument(flag, dest=name, action="store_true")
    parser.add_argument("--no-smoke", dest="smoke", action="store_false")
    return parser


@dataclass
class Options:
    stack: str = DEFAULT_STACK
    region: str = ""
    profile: str = ""
    params: dict[str, str] = field(default_factory=dict)
    s3_bucket: str = ""
    openapi: str = ""
    dry_run: bool = False
    smoke: bool = True
    delete: bool = False
    yes: bool = False
    stats_token: bool = False
    emulator: bool = False
    help: bool = False

    def where(self) -> str:
        """The one-line reminder of where this runs, e.g. "--stack-name s --region eu-west-1"."""
        out = f"--stack-name {self.stack}"
        if self.region:
            out += f" --region {self.region}"
        if self.profile:
            out += f" --profile {self.profile}"
        return out


# CloudFormation's rule for a stack name. The local stack keeps its tables in a directory of
# that name, so the same rule keeps `--stack-name ../../x` inside its state directory.
STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")


def check_stack_name(name: str) -> None:
    """Refuse a name CloudFormation would refuse (UsageError), for deploys and --local alike."""
    if not STACK_NAME.fullmatch(name):
        raise UsageError(
            f"invalid stack name '{name}': letters, digits and hyphens, starting with a "
            "letter, at most 128"
        )


def parse(argv: list[str], has_terminal: bool) -> Options:
    """The options; -h or --help anywhere ends the command line (what follows is not read)."""
    args = list(argv)
    asks_help = next((i for i, arg in enumerate(args) if arg in ("-h", "--help")), None)
    if asks_help is not None:
        args = args[:asks_help]
    for i, arg in enumerate(args):
        # argparse takes --option=value; ./deploy.sh never did (a value is the next word).
        # Nor "--" (argparse: the end of the options).
        in_option_place = i == 0 or args[i - 1] not in VALUE_OPTIONS
        if in_option_place and (arg == "--" or (arg.startswith("--") and "=" in arg)):
            raise UsageError(f"unknown option '{arg}'")
    try:
        parsed, unknown = _parser().parse_known_args(args)
    except argparse.ArgumentError as error:  # only "expected one argument" can reach here
        raise UsageError(f"{error.argument_name} needs a value") from None
    if unknown:
        if unknown[0] == "--port":
            raise UsageError(f"--port is an option of --local ({PROG} --local --port N)")
        raise UsageError(f"unknown option '{unknown[0]}'")
    options = Options(help=asks_help is not None)
    for option in VALUE_OPTIONS:
        given = getattr(parsed, option[2:].replace("-", "_"))
        for value in given if isinstance(given, list) else [given] if given is not None else []:
            if value.startswith("-"):  # argparse takes "-" and "-1" as values; never one here
                raise UsageError(f"{option} needs a value")
            _set_value(options, option, value)
    for name in (*FLAGS.values(), "smoke"):
        setattr(options, name, getattr(parsed, name))
    if options.help:
        return options
    check_stack_name(options.stack)
    if options.stats_token and (
        options.delete or options.params or options.dry_run or options.s3_bucket
    ):
        raise UsageError("--stats-token takes no --delete, --param, --s3-bucket or --dry-run")
    if options.delete:
        if options.params or options.dry_run or options.s3_bucket or options.openapi:
            raise UsageError("--delete takes no --param, --openapi, --s3-bucket or --dry-run")
        if not options.yes and not has_terminal:
            raise Refused(
                f"refusing to delete stack {options.stack} without confirmation: no terminal "
                "to ask on; pass --yes to delete it from a script",
                code=2,
            )
    elif options.yes:
        raise UsageError("--yes only applies to --delete")
    if options.openapi:
        if "RouteTemplates" in options.params:
            raise UsageError("give --openapi or --param RouteTemplates=..., not both")
        from deployer.openapi import route_templates  # reads templates/: only when asked

        options.params["RouteTemplates"] = route_templates(Path(options.openapi))
    return options


def _set_value(options: Options, option: str, value: str) -> None:
    if option == "--stack-name":
        options.stack = value
    elif option == "--region":
        options.region = value
    elif option == "--profile":
        options.profile = value
    elif option == "--openapi":
        options.openapi = value
    elif option == "--s3-bucket":
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value):
            raise UsageError(f"--s3-bucket '{value}' is not an S3 bucket name")
        options.s3_bucket = value
    else:
        key, sep, assigned = value.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9]+", key):
            raise UsageError(
                f"--param '{value}' is not Key=Value (e.g. --param LogRetentionDays=14)"
            )
        options.params[key] = assigned
