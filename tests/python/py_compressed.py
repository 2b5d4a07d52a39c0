"""A plain grpcio client sending compressed requests (``compression=`` on the channel, as in
production settings) to a Rust grpc-helper server, for the interop tests.

Usage: python tests/python/py_compressed.py [--host 127.0.0.1] --port PORT --compression gzip|deflate

Output, one item per line:

    METHOD4 len=<length of the echoed reply>   (user method, SampleService)
    INFO services=<comma-separated names>       (built-in RpcServerService)
    HEALTH status=<SERVING|...>                 (grpc.health.v1.Health, whole server)
    OK
"""

import sys

import common


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="grpcio client with compressed requests")
    parser.add_argument("--host", default=common.LOOPBACK_IP)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--compression", choices=["gzip", "deflate"], required=True)
    args = parser.parse_args()

    sample_pb2, sample_pb2_grpc = common.generate_sample_stubs()
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_helper_api import Filter
    from grpc_helper_api.server_pb2_grpc import RpcServerServiceStub

    compression = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}[args.compression]
    channel = grpc.insecure_channel(f"{args.host}:{args.port}", compression=compression)

    # Compressible, so that compression has something to do both ways (the reply echoes it).
    foo = "compress me " * 200
    reply = sample_pb2_grpc.SampleServiceStub(channel).method4(sample_pb2.SampleRequest(foo=foo), timeout=args.timeout)
    assert reply.bar == foo, f"method4 echoed {reply.bar[:40]!r}..."
    print(f"METHOD4 len={len(reply.bar)}", flush=True)

    info = RpcServerServiceStub(channel).info(Filter(), timeout=args.timeout)
    print(f"INFO services={','.join(item.name for item in info.items)}", flush=True)

    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=args.timeout)
    print(f"HEALTH status={health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)}", flush=True)
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    common.run(main)
