"""The baseline: a bare grpcio server (sync, ThreadPoolExecutor) that echoes request bytes.

    python -m loadtest.echo_server --port 50061 [--workers 16]

One generic unary handler at /gatekeeper.v1.EligibilityService/CheckClaim returns the request
bytes unchanged: no protobuf parsing (request_deserializer/response_serializer None), no
interceptors, no options. Whatever gatekeeper costs beyond this is the service's own work.
SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent import futures

import grpc

SERVICE = "gatekeeper.v1.EligibilityService"
METHOD = "CheckClaim"
PATH = f"/{SERVICE}/{METHOD}"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def create_server(port: int, workers: int = 16, host: str = "127.0.0.1") -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="echo"))
    handler = grpc.unary_unary_rpc_method_handler(_echo, request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    return server, bound


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=50061, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="loopback unless you mean otherwise")
    parser.add_argument("--workers", type=int, default=16, help="gRPC worker threads (gatekeeper's default is 16)")
    args = parser.parse_args(argv)
    server, port = create_server(args.port, args.workers, args.host)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    server.start()
    print(f"echo server listening on {args.host}:{port} ({PATH})", flush=True)
    done.wait()
    server.stop(grace=1).wait(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
