"""moto_server with DynamoDB's write atomicity: `python local/atomic_moto.py -p PORT`.

moto applies UpdateItem as read, modify, write with no lock, so two concurrent `ADD`s on
one item can both read the old count and one hit is lost. Real DynamoDB serialises the
writes to an item, which is what makes our one-call counter exact. This server runs moto's
own WSGI application unchanged, but lets one DynamoDB request through at a time, which
restores that guarantee (moto answers from one Python process either way, so little
throughput is lost). Everything else moto serves concurrently, as moto_server does.
"""

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


def serialise_dynamodb(app: WsgiApp) -> WsgiApp:
    """Wrap a WSGI app so that DynamoDB requests run one at a time."""
    lock = threading.Lock()

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with lock:
                # Drain the body inside the lock: the write happens while it is produced.
                return list(app(environ, start_response))
        return app(environ, start_response)

    return application


class QuietRequestHandler(MotoRequestHandler):
    """moto_server's handler without its access log: one line per request, formatted and
    written for nobody (--local discards the emulator's output), costs the emulator about
    3% of its time per request. Errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def moto_application() -> WsgiApp:
    return serialise_dynamodb(DomainDispatcherApplication(create_backend_app))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("-p", "--port", type=int, default=5000, help="port to bind")
    parser.add_argument("--cert", help="serve HTTPS with this certificate (PEM), as AWS does")
    parser.add_argument("--key", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)

    def stop(*_: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # moto loads a service on its first request, and CloudFormation pulls in most of them:
    # load it before listening, while the caller is busy with its own start-up.
    import moto.cloudformation.models  # noqa: F401

    # Run as a script (python -P local/atomic_moto.py): the project root holds local/.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from local import moto_fidelity

    moto_fidelity.apply()

    run_simple(
        args.host,
        args.port,
        moto_fidelity.wrap(moto_application()),
        threaded=True,
        request_handler=QuietRequestHandler,
        ssl_context=(args.cert, args.key) if args.cert else None,
    )


if __name__ == "__main__":
    main()
