"""./deploy.sh against emulators: one that lacks calls as LocalStack does, and the rehearsal
(./deploy.sh --emulator) that starts its own."""

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.emulator import Emulator
from local.tls import write_self_signed_certificate
from tests.conftest import ROOT, TlsEmulator, gone_within, port_is_free
from tests.integration.test_deploy import (
    client,
    deploy_env,
    physical_id,
    run_deploy,
    stack_parameters,
)


@pytest.fixture(scope="module")
def localstack_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEmulator]:
    """The emulator over TLS, answering SetStackPolicy and a change set made with
    UsePreviousTemplate as LocalStack 4.14 does (tests/localstack_gaps.py)."""
    cert, key = write_self_signed_certificate(tmp_path_factory.mktemp("tls"))
    emulator = Emulator(tls=(str(cert), str(key)), server=ROOT / "tests" / "localstack_gaps.py")
    try:
        emulator.wait_ready()
        yield TlsEmulator(emulator.endpoint, str(cert))
    finally:
        emulator.stop()


def test_an_emulator_that_lacks_set_stack_policy_is_one_warning_and_the_deploy_completes(
    localstack_like: TlsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AWS_CA_BUNDLE", localstack_like.ca_bundle)
    endpoint = localstack_like.endpoint

    result = run_deploy(tmp_path, endpoint, "--stack-name", "gaps")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"warning: the endpoint {endpoint} does not implement SetStackPolicy "
        "(InternalFailure): no stack policy set (on AWS it keeps updates from replacing or "
        "deleting CounterTable or SeriesTable); the deploy goes on (against AWS this is an "
        "error)"
    ]
    # the create, then deletion protection turned on with the template sent again
    assert "Deletion protection of CounterTable and SeriesTable is on" in result.stdout
    assert stack_parameters(endpoint, "gaps")["TableDeletionProtection"] == "true"
    for table in ("CounterTable", "SeriesTable"):
        described = client("dynamodb", endpoint).describe_table(
            TableName=physical_id(endpoint, "gaps", table)
        )["Table"]
        assert described["DeletionProtectionEnabled"] is True, table
    assert "==> Outputs:" in result.stdout

    update = run_deploy(tmp_path, endpoint, "--stack-name", "gaps", "--param", "RateLimit=5")

    assert update.returncode == 0, update.stdout + update.stderr
    assert len(update.stderr.splitlines()) == 1 and "SetStackPolicy" in update.stderr
    assert stack_parameters(endpoint, "gaps")["RateLimit"] == "5"


# --- ./deploy.sh --emulator ---------------------------------------------------------------------


def rehearsal_emulator(out: str) -> tuple[str, int]:
    """The endpoint and pid the rehearsal's first line names."""
    found = re.search(
        r"==> Emulator: (https://127\.0\.0\.1:(\d+)) \(moto_server over TLS, pid (\d+)\)", out
    )
    assert found, out
    return found.group(1), int(found.group(3))


def test_the_rehearsal_deploys_the_real_template_over_tls_and_stops_its_emulator(tmp_path):
    result = run_deploy(
        tmp_path,
        None,
        "--emulator",
        "--stack-name",
        "rehearsal",
        "--param",
        "RateLimit=5",
        credentials=False,  # a user with no AWS account
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    endpoint, pid = rehearsal_emulator(result.stdout)
    out = result.stdout
    # the real deploy: through the deployment bucket (TLS only), change set, protection on
    assert "==> Template uploaded to s3://route-counter-deploy-123456789012-us-east-1/" in out
    assert "==> Stack rehearsal is CREATE_COMPLETE" in out
    assert "Deletion protection of CounterTable and SeriesTable is on" in out
    assert "==> Stack policy set" in out
    assert "RateLimit = 5" in out
    assert out.splitlines()[-1] == (
        f"==> Rehearsal done: stack rehearsal deployed to the emulator at {endpoint}; "
        "stopping it (nothing is kept)"
    )
    assert gone_within(pid, 5)
    assert port_is_free(int(endpoint.rsplit(":", 1)[1]))


def test_a_failed_rehearsal_stops_its_emulator_too(tmp_path):
    result = run_deploy(tmp_path, None, "--emulator", "--param", "LogRetentionDays=8")

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: parameter LogRetentionDays='8' ")
    _, pid = rehearsal_emulator(result.stdout)
    assert gone_within(pid, 5)


def test_ctrl_c_during_a_rehearsal_stops_its_emulator(tmp_path):
    """Ctrl-C in the terminal: SIGINT to the whole foreground process group."""
    process = subprocess.Popen(
        [str(ROOT / "deploy.sh"), "--emulator", "--stack-name", "stopped"],
        cwd=tmp_path,
        env=deploy_env(tmp_path, None, credentials=False),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        first = process.stdout.readline()  # the emulator is up and named
        _, pid = rehearsal_emulator(first)
        os.killpg(process.pid, signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert process.returncode == 130, first + out
    assert gone_within(pid, 5)
    assert "Rehearsal done" not in out
