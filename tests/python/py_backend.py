"""A Python grpc_helper (2.3.1) backend that registers with a Rust main server, for the interop tests.

Usage: python tests/python/py_backend.py --port P --main-port M --workspace DIR

Serves SampleService (method4 answers `bar = "py:" + foo`) in a grpc_helper RpcServer on port P,
then registers it as "sample" (version "py-backend") with the main server's
`srv.proxy_register`, host 127.0.0.1. Prints `READY <port>` once registered, and exits when shut
down remotely, on SIGTERM/SIGINT, or after 120 s (exit code 2).
"""

import argparse
import signal
import sys
import threading
from pathlib import Path

import common


def main() -> int:
    parser = argparse.ArgumentParser(description="grpc_helper 2.3.1 backend of a Rust main server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--main-port", type=int, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    args = parser.parse_args()

    common.loopback_only()
    sample_pb2, sample_pb2_grpc = common.generate_sample_stubs()

    import grpc
    import grpc_helper
    from grpc_helper import Folders, RpcClient, RpcManager, RpcServer, RpcServiceDescriptor
    from grpc_helper_api import Filter, ProxyRegisterRequest, ServerApiVersion
    from grpc_helper_api.server_pb2_grpc import RpcServerServiceStub

    class Backend(RpcManager):
        def method4(self, request: sample_pb2.SampleRequest) -> sample_pb2.SampleResponse:
            return sample_pb2.SampleResponse(bar="py:" + request.foo)

    def unimplemented(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by this backend")

    for name in ("method1", "method2", "method3", "long_method", "plain", "s_method1", "s_method2", "s_method3", "s_method4"):
        setattr(Backend, name, unimplemented)

    descriptor = RpcServiceDescriptor(
        grpc_helper,
        "sample",
        sample_pb2.SampleApiVersion,
        Backend(),
        sample_pb2_grpc.add_SampleServiceServicer_to_server,
        sample_pb2_grpc.SampleServiceStub,
    )
    server = RpcServer(args.port, [descriptor], folders=Folders(workspace=args.workspace), with_debug_signal=False)

    main = RpcClient(
        "127.0.0.1",
        args.main_port,
        {"srv": (RpcServerServiceStub, ServerApiVersion.SERVER_API_CURRENT)},
        timeout=10,
        name=common.client_metadata("py-backend"),
    )
    main.srv.proxy_register(
        ProxyRegisterRequest(names=["sample"], version="py-backend", host="127.0.0.1", port=args.port), timeout=10
    )
    print(f"READY {args.port}", flush=True)

    stopped = threading.Event()

    def stop(*_):
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=lambda: (server.wait_shutdown(), stopped.set()), daemon=True).start()
    if not stopped.wait(timeout=120):
        print("TIMEOUT: no shutdown within 120 s", file=sys.stderr, flush=True)
        server.shutdown()
        return 2
    try:
        main.srv.proxy_forget(Filter(names=["sample"]), timeout=5)
    except Exception:  # the main server may be gone already
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    common.run(main)
