"""Python grpc_helper (2.3.1) client of a Rust server whose admin networks leave it out, for the
interop tests: its `config.set` is refused, and the message tells the operator what to set.

Usage: python tests/python/py_refused.py --host 127.0.0.1 --port PORT [--timeout SECONDS]

Output:

    REFUSED rc=<ResultCode> <the error, on one line: it holds the gRPC status and its details>
    OK
"""

import common


def main() -> int:
    args = common.client_args("grpc_helper 2.3.1 client refused an admin RPC", timeout=5.0)

    common.loopback_only()
    from grpc_helper import RpcClient, RpcException
    from grpc_helper_api import ConfigApiVersion, ConfigItemUpdate, ConfigUpdate
    from grpc_helper_api.config_pb2_grpc import ConfigServiceStub

    client = RpcClient(
        args.host,
        args.port,
        {"config": (ConfigServiceStub, ConfigApiVersion.CONFIG_API_CURRENT)},
        timeout=args.timeout,
        name=common.client_metadata("py-refused"),
    )
    update = ConfigUpdate(items=[ConfigItemUpdate(name="sample-greeting", value="Hej")])
    try:
        client.config.set(update, timeout=args.timeout)
        raise AssertionError("an admin RPC from outside the admin networks was accepted")
    except RpcException as e:
        # The original wraps the status as ERROR_RPC, with the status and its details in the text.
        print(f"REFUSED rc={int(e.rc)} {' '.join(str(e).split())}", flush=True)
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    common.run(main)
