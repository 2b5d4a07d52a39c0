"""Python grpc_helper (2.3.1) client run against a Rust server, for the interop tests.

Usage: python tests/python/py_client.py --host 127.0.0.1 --port PORT [--timeout SECONDS]

The server must host the built-in "srv" service (RpcServerService) and the sample service
(SampleService, API versions: supported 1, current 2). Output, one item per line:

    SERVICE name=<name> version=<version> current=<n> supported=<n>   (one per served service)
    METHOD4 bar=<bar>
    TOO_NEW rc=12
    TOO_OLD rc=11
    OK

Any failure prints a traceback on stderr and exits 1.
"""

import argparse
import sys
import traceback

import common


def expect_rc(call, expected: int, what: str) -> int:
    """Run ``call``; it must raise grpc_helper's RpcException with rc ``expected``."""
    from grpc_helper import RpcException

    try:
        result = call()
    except RpcException as e:
        if e.rc != expected:
            raise AssertionError(f"{what}: expected rc={expected}, got rc={e.rc}: {e}") from e
        return e.rc
    raise AssertionError(f"{what}: expected RpcException rc={expected}, call returned {result!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description="grpc_helper 2.3.1 interop client")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline of each call, and retry budget while the server is unavailable")
    args = parser.parse_args()
    timeout = args.timeout

    common.loopback_only()
    sample_pb2, sample_pb2_grpc = common.generate_sample_stubs()

    from grpc_helper import RpcClient
    from grpc_helper_api import Filter, ResultCode, ServerApiVersion
    from grpc_helper_api.server_pb2_grpc import RpcServerServiceStub

    SampleServiceStub = sample_pb2_grpc.SampleServiceStub
    current = sample_pb2.SampleApiVersion.Value("SAMPLE_API_CURRENT")

    def client(sample_version: int) -> RpcClient:
        # RpcClient's `timeout` only bounds its retries on UNAVAILABLE; each call also gets
        # `timeout=` (the gRPC deadline, which RpcClient leaves unset by default).
        return RpcClient(
            args.host,
            args.port,
            {"srv": (RpcServerServiceStub, ServerApiVersion.SERVER_API_CURRENT), "sample": (SampleServiceStub, sample_version)},
            timeout=timeout,
            name=common.client_metadata(f"py-interop-v{sample_version}"),
        )

    # (a) service list
    c = client(current)
    info = c.srv.info(Filter(), timeout=timeout)
    for item in info.items:
        print(f"SERVICE name={item.name} version={item.version} current={item.current_api_version} supported={item.supported_api_version}", flush=True)
    names = [item.name for item in info.items]
    for needed in ("srv", "sample"):
        assert needed in names, f"service {needed!r} not in info: {names}"

    # (b) a versioned call at the current API version
    reply = c.sample.method4(sample_pb2.SampleRequest(foo="interop"), timeout=timeout)
    assert reply.r.code == ResultCode.OK, f"method4 returned {reply}"
    print(f"METHOD4 bar={reply.bar}", flush=True)

    # (c) client newer than the server's current version
    too_new = client(current + 1)
    rc = expect_rc(lambda: too_new.sample.method4(sample_pb2.SampleRequest(foo="interop"), timeout=timeout), ResultCode.ERROR_API_SERVER_TOO_OLD, "api version 3")
    print(f"TOO_NEW rc={rc}", flush=True)

    # (d) client older than the server's supported version
    too_old = client(0)
    rc = expect_rc(lambda: too_old.sample.method4(sample_pb2.SampleRequest(foo="interop"), timeout=timeout), ResultCode.ERROR_API_CLIENT_TOO_OLD, "api version 0")
    print(f"TOO_OLD rc={rc}", flush=True)

    print("OK", flush=True)
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
    sys.exit(rc)
