"""The emulator as LocalStack answers what it lacks: `python -P tests/localstack_gaps.py`
with local/atomic_moto.py's arguments (local.emulator.Emulator(server=...)).

LocalStack 4.14 (issue 21) does not emulate CloudFormation's SetStackPolicy and refuses a
change set made with UsePreviousTemplate. It answers an operation it lacks with HTTP 501 and
the code InternalFailure ("... not yet implemented or pro feature"; localstack#11364 shows
the answer). These requests get that answer here, from the server, as a client on the wire
sees it; everything else is the emulator's. The UsePreviousTemplate refusal's words are
ours: the issue names the refusal, not its text.
"""

from __future__ import annotations

import io
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import parse_qs

NOT_IMPLEMENTED = """<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
<Error><Type>Sender</Type><Code>InternalFailure</Code><Message>{message}</Message></Error>
<RequestId>{request_id}</RequestId></ErrorResponse>"""


def lacked(form: dict[str, list[str]]) -> str | None:
    """Why LocalStack would refuse this CloudFormation request, or None."""
    action = form.get("Action", [""])[0]
    if action == "SetStackPolicy":
        return (
            "API action 'SetStackPolicy' for service 'cloudformation' not yet implemented "
            "or pro feature"
        )
    if action == "CreateChangeSet" and form.get("UsePreviousTemplate") == ["true"]:
        return "UsePreviousTemplate is not supported for change sets"
    return None


def refuse_what_localstack_lacks(app: Callable) -> Callable:
    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            why = lacked(parse_qs(body.decode()))
            if why:
                answer = NOT_IMPLEMENTED.format(message=why, request_id=uuid.uuid4()).encode()
                start_response(
                    "501 Not Implemented",
                    [("Content-Type", "text/xml"), ("Content-Length", str(len(answer)))],
                )
                return [answer]
        return app(environ, start_response)

    return application


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from local import atomic_moto

    atomic_moto.main(middleware=refuse_what_localstack_lacks)
