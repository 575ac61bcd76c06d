"""Start-up failures of `./deploy.sh --local` in one plain line: no exception's name."""

import socket

from tests.conftest import start_failure


def test_start_up_failures_are_one_line_in_plain_words(tmp_path):
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "state").write_text("a file where the state directory should be")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failures = {
            "missing template": start_failure(tmp_path, "--template", str(tmp_path / "none")),
            "broken template": start_failure(tmp_path, "--template", str(tmp_path / "broken.json")),
            "state dir": start_failure(tmp_path, "--port", "0"),
            "openapi": start_failure(tmp_path, "--openapi", str(tmp_path / "none.yaml")),
            "port": start_failure(tmp_path, "--port", str(port), "--fresh"),
        }

    said = {name: result.stderr.splitlines() for name, result in failures.items()}
    assert said == {
        "missing template": [
            f"error: --template {tmp_path / 'none'}: cannot read it (No such file or directory)"
        ],
        "broken template": [
            f"error: --template {tmp_path / 'broken.json'}: not a JSON template (Expecting"
            " property name enclosed in double quotes: line 1 column 2 (char 1))"
        ],
        "state dir": [
            f"error: cannot start the local stack: {tmp_path / 'state' / 'route-counter'}:"
            " not a directory"
        ],
        "openapi": [
            f"error: --openapi {tmp_path / 'none.yaml'}: cannot read it (No such file or directory)"
        ],
        "port": [f"error: port {port} on 127.0.0.1 is in use: stop what uses it or choose --port"],
    }
    assert {name: result.returncode for name, result in failures.items()} == {
        "missing template": 1,
        "broken template": 1,
        "state dir": 1,
        "openapi": 2,
        "port": 1,
    }
