"""./deploy.sh --emulator: a real deploy rehearsed with no AWS account.

The emulator the integration tests deploy to (local/atomic_moto.py: moto_server with the
fidelity fixes of local/moto_fidelity.py) starts on 127.0.0.1 and a free port, over TLS with a
certificate made for the run, as AWS answers; the real template then goes through the real
deployer with fake credentials (every call to the emulator: AWS_ENDPOINT_URL, trusted through
AWS_CA_BUNDLE), the deployment bucket and its TLS-only policy included. The emulator stops
when the deploy ends, however it ends; nothing is kept.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deployer.errors import EmulatorFailed, UsageError
from deployer.options import Options
from local.emulator import DEFAULT_REGION, FAKE_CREDENTIALS, Emulator
from local.emulator import DeployError as EmulatorDown
from local.tls import write_self_signed_certificate

# What would send the rehearsal elsewhere than its own emulator.
AWS_SETTINGS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE")


def check(options: Options) -> None:
    """What a rehearsal cannot do: the emulator starts empty and stops after the deploy."""
    if options.delete or options.stats_token:
        raise UsageError(
            "--emulator deploys to an emulator that starts empty and stops afterwards: "
            "it takes no --delete or --stats-token"
        )
    if options.profile:
        raise UsageError("--emulator uses fake credentials: it takes no --profile")


def rehearse(
    options: Options, deploy: Callable[[Options], Any], say: Callable[[str], None]
) -> None:
    """Start the emulator, run deploy(options) against it, stop it."""
    check(options)
    with tempfile.TemporaryDirectory(prefix="route-counter-emulator.") as tmp:
        cert, key = write_self_signed_certificate(Path(tmp))
        emulator = Emulator(tls=(str(cert), str(key)))
        try:
            try:
                emulator.wait_ready()
            except EmulatorDown as error:
                raise EmulatorFailed(f"the emulator did not start: {error}") from None
            for name in AWS_SETTINGS:
                os.environ.pop(name, None)
            os.environ.update(FAKE_CREDENTIALS)
            os.environ["AWS_ENDPOINT_URL"] = emulator.endpoint
            os.environ["AWS_CA_BUNDLE"] = str(cert)
            region = options.region or DEFAULT_REGION
            os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = region
            say(
                f"==> Emulator: {emulator.endpoint} (moto_server over TLS, pid {emulator.pid}), "
                "fake credentials: nothing here reaches AWS"
            )
            deploy(options).run()
            say(
                f"==> Rehearsal done: stack {options.stack} deployed to the emulator at "
                f"{emulator.endpoint}; stopping it (nothing is kept)"
            )
        finally:
            emulator.stop()
