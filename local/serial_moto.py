"""moto_server, serving one request at a time: `python serial_moto.py -H HOST -p PORT`.

moto_server's stock entry point serves requests on concurrent threads, and moto's DynamoDB
does not lock an item while it applies an update: two concurrent UpdateItem ADD calls can
read the same old value and one increment is lost (real DynamoDB applies each atomically).
Served one at a time, every request sees the effect of the ones before it, as on AWS. This is
moto_server's own `main`, same options, with only the threading turned off.
"""

import sys

from moto import server

_run_simple = server.run_simple


def _run_serially(*args, **kwargs):
    return _run_simple(*args, **{**kwargs, "threaded": False})


if __name__ == "__main__":
    # moto loads a service on its first request; CloudFormation pulls in most of them. Load
    # it before listening, while the caller is busy with its own start-up.
    import moto.cloudformation.models  # noqa: F401

    server.run_simple = _run_serially
    sys.exit(server.main())
