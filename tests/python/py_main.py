"""A Python grpc_helper (2.3.1) main server that proxies SampleService, for the interop tests.

Usage: python tests/python/py_main.py --port PORT --workspace DIR

Serves the built-in services and a proxied "sample" service (SampleService, calls forwarded to
whichever backend registers it with `srv.proxy_register`) on PORT, with DIR as its workspace.
RPC_CLIENT_TIMEOUT in the environment sets its registration wait and forwarding retry window.
Prints ``READY <port>`` once serving, and exits after a remote shutdown (exit 0), on SIGTERM or
SIGINT (exit 0), or after 120 s (exit code 2).
"""

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import common


def main() -> int:
    parser = argparse.ArgumentParser(description="grpc_helper 2.3.1 main server proxying SampleService")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    args = parser.parse_args()

    # Whatever happens, the process ends in time.
    watchdog = threading.Timer(120, lambda: (print("TIMEOUT: py_main alive after 120 s", file=sys.stderr, flush=True), os._exit(2)))
    watchdog.daemon = True
    watchdog.start()

    common.loopback_only()
    sample_pb2, sample_pb2_grpc = common.generate_sample_stubs()

    import grpc_helper
    from grpc_helper import Folders, RpcServer, RpcServiceDescriptor

    # For a proxied service the manager is only the generated servicer base: never called.
    proxied = RpcServiceDescriptor(
        grpc_helper,
        "sample",
        sample_pb2.SampleApiVersion,
        sample_pb2_grpc.SampleServiceServicer(),
        sample_pb2_grpc.add_SampleServiceServicer_to_server,
        sample_pb2_grpc.SampleServiceStub,
        is_proxy=True,
    )
    args.workspace.mkdir(parents=True, exist_ok=True)
    server = RpcServer(args.port, [proxied], folders=Folders(workspace=args.workspace), with_debug_signal=False)
    print(f"READY {args.port}", flush=True)

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    remote = threading.Event()
    threading.Thread(target=lambda: (server.wait_shutdown(), remote.set(), stopped.set()), daemon=True).start()
    stopped.wait()
    if not remote.is_set():
        server.shutdown()
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except BaseException:
        import traceback

        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # grpc's worker threads must not keep the process alive once the server is down.
    os._exit(rc)
