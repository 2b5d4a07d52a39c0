"""Python grpc_helper (2.3.1) server with only the built-in services, for the interop tests.

Usage: python tests/python/py_server.py --port PORT --workspace DIR [--max-lifetime SECONDS]

Serves srv (RpcServerService), config and log on PORT (grpc_helper binds [::]:PORT), with
DIR as its workspace (logs go to DIR/logs). Prints ``READY <port>`` on stdout once serving,
then blocks until:
  - a remote shutdown (srv.shutdown(ShutdownRequest(timeout=-1))) completes -> exit 0
  - SIGTERM or SIGINT -> graceful shutdown, exit 0
  - the safety net (--max-lifetime, at most 120 s) -> shutdown, "TIMEOUT" on stderr, exit 2
Startup errors print a traceback and exit 1.

Note: a remote shutdown with timeout=0 makes grpc_helper sleep rpc-shutdown-timeout (60 s)
before finishing; use timeout=-1 for an immediate shutdown.
"""

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import common

MAX_LIFETIME = 120.0
HARD_EXIT_MARGIN = 10.0  # graceful shutdown starts this long before the hard deadline


def hard_exit(code: int, why: str):
    try:
        print(why, file=sys.stderr, flush=True)
        sys.stdout.flush()
    finally:
        os._exit(code)


def main() -> int:
    parser = argparse.ArgumentParser(description="grpc_helper 2.3.1 interop server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--max-lifetime", type=float, default=MAX_LIFETIME, help=f"safety net, seconds (capped at {MAX_LIFETIME:.0f})")
    args = parser.parse_args()
    if not 0 < args.port < 65536:
        parser.error("--port must be in 1..65535")
    lifetime = min(max(args.max_lifetime, 1.0), MAX_LIFETIME)
    started = time.monotonic()

    # Hard safety net: whatever happens (hung startup or shutdown), the process ends in time.
    watchdog = threading.Timer(lifetime, hard_exit, args=(2, f"TIMEOUT: py_server still alive after {lifetime:.0f}s, exiting"))
    watchdog.daemon = True
    watchdog.start()

    # Signals only raise a flag: the main loop does the (blocking) shutdown outside the handler.
    stop_signal = []

    def on_signal(signum, frame):
        stop_signal.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    common.loopback_only()
    from grpc_helper import Folders, RpcServer

    workspace = args.workspace.resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    server = RpcServer(args.port, [], folders=Folders(workspace=workspace), with_debug_signal=False)
    print(f"READY {args.port}", flush=True)

    remote_done = threading.Event()

    def wait_remote():
        server.wait_shutdown()
        remote_done.set()

    threading.Thread(target=wait_remote, name="WaitShutdown", daemon=True).start()

    soft_deadline = started + max(lifetime - HARD_EXIT_MARGIN, lifetime / 2)
    timed_out = False
    while not remote_done.is_set() and not stop_signal:
        if time.monotonic() >= soft_deadline:
            timed_out = True
            break
        time.sleep(0.1)

    if not remote_done.is_set():
        # Local shutdown (signal or safety net): synchronous in grpc_helper when called without a request.
        server.shutdown()
    if timed_out:
        print(f"TIMEOUT: py_server not shut down within {soft_deadline - started:.0f}s, exited by itself", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    try:
        rc = main()
    except SystemExit:
        raise
    except BaseException:
        sys.stdout.flush()
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # grpc's worker threads must not keep the process alive once the server is down.
    os._exit(rc)
