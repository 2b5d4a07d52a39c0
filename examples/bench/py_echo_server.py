"""Echo server of the `bench` example, on the Python grpc-helper 2.3.1 (the original).

Hosts one manager for `SampleService` (method4 echoes `foo` into `bar`; s_method2 streams
`--stream-items` statuses) in a grpc_helper RpcServer listening on 127.0.0.1 only. Stubs are
generated at start-up with grpc_tools.protoc from `<proto-root>/sample/sample.proto` into a
temporary folder. Prints `READY <port>` once serving, and stops when stdin closes.

    python py_echo_server.py --port 50051 --proto-root /path/to/repo/proto   (--port 0: any free port)
"""

import argparse
import logging
import sys
import tempfile
from pathlib import Path


def generate_stubs(proto_root: Path, out: Path) -> None:
    from grpc_tools import protoc

    # Only sample.proto: its import (grpc_helper_api/common.proto) resolves to the installed
    # grpc_helper_api package, whose message types the server itself uses.
    args = ["protoc", f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}", "sample/sample.proto"]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {proto_root / 'sample/sample.proto'}")


def listen_on_loopback_only() -> list:
    """grpc_helper.RpcServer listens on [::]:<port>; the bench allows loopback traffic only.

    Returns the list that receives the port grpc bound (the real one when asked for port 0)."""
    import grpc_helper.server as helper_server

    make_server = helper_server.server
    bound = []

    def loopback_server(*args, **kwargs):
        srv = make_server(*args, **kwargs)
        add_port = srv.add_insecure_port

        def add_loopback_port(address):
            port = add_port(address.replace("[::]", "127.0.0.1", 1))
            bound.append(port)
            return port

        srv.add_insecure_port = add_loopback_port
        return srv

    helper_server.server = loopback_server
    return bound


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--proto-root", type=Path, required=True)
    parser.add_argument("--stream-items", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-py-") as tmp:
        tmp = Path(tmp)
        (tmp / "stubs").mkdir()
        generate_stubs(args.proto_root, tmp / "stubs")
        sys.path.insert(0, str(tmp / "stubs"))

        import grpc
        import grpc_helper
        from grpc_helper import Folders, RpcManager, RpcServer, RpcServiceDescriptor
        from grpc_helper_api import Result, ResultStatus
        from sample import sample_pb2, sample_pb2_grpc

        items = args.stream_items

        class EchoManager(RpcManager):
            def method4(self, request: sample_pb2.SampleRequest) -> sample_pb2.SampleResponse:
                return sample_pb2.SampleResponse(bar=request.foo)

            def s_method2(self, request: sample_pb2.SampleRequest) -> ResultStatus:
                item = ResultStatus(r=Result(msg="item"))
                for _ in range(items):
                    yield item

        def unimplemented(self, request, context):
            # Two parameters: grpc_helper registers it as is (the servicer needs every method).
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "not part of the bench")

        for name in ("method1", "method2", "method3", "long_method", "plain", "s_method1", "s_method3", "s_method4"):
            setattr(EchoManager, name, unimplemented)

        bound = listen_on_loopback_only()
        descriptor = RpcServiceDescriptor(
            grpc_helper,
            "sample",
            sample_pb2.SampleApiVersion,
            EchoManager(),
            sample_pb2_grpc.add_SampleServiceServicer_to_server,
            sample_pb2_grpc.SampleServiceStub,
        )
        server = RpcServer(args.port, [descriptor], folders=Folders(workspace=tmp / "workspace"), with_debug_signal=False)
        print(f"READY {bound[0] if bound else args.port}", flush=True)
        try:
            # Serve until the bench closes our stdin (or goes away).
            sys.stdin.read()
        finally:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
