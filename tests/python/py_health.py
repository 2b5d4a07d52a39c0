"""Standard gRPC clients from PyPI (grpcio-health-checking, grpcio-reflection) against a Rust
grpc-helper server, for the interop tests.

Usage: python tests/python/py_health.py [--host 127.0.0.1] --port PORT

Output, one item per line:

    HEALTH service=<name> status=<SERVING|NOT_SERVING|...>   ("" and SampleService)
    SERVICES <sorted, comma-separated service names from reflection v1alpha>
    OK
"""

import sys

import common


def main() -> int:
    args = common.client_args("standard health and reflection clients", timeout=10.0)

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    channel = grpc.insecure_channel(f"{args.host}:{args.port}")
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "SampleService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=args.timeout)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        print(f"HEALTH service={service} status={status}", flush=True)

    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    print(f"SERVICES {','.join(services)}", flush=True)
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    common.run(main)
