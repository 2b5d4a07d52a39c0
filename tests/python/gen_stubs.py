"""Generate (and check) the Python stubs of proto/sample/sample.proto.

Usage: python tests/python/gen_stubs.py [--out DIR]

Without --out the stubs go to a temporary directory that is removed on exit (a pure check).
Prints one line: ``STUBS <dir>``. Exit code 1 on any failure.
"""

import argparse
import sys
import traceback

from common import generate_sample_stubs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default: a temporary one)")
    args = parser.parse_args()

    sample_pb2, sample_pb2_grpc = generate_sample_stubs(args.out)

    # Sanity: the sample messages reuse grpc_helper_api's own classes for the shared types.
    from grpc_helper_api import common_pb2

    assert sample_pb2.SampleResponse.DESCRIPTOR.fields_by_name["r"].message_type is common_pb2.Result.DESCRIPTOR
    assert sample_pb2.SampleApiVersion.Value("SAMPLE_API_CURRENT") == 2
    assert hasattr(sample_pb2_grpc, "SampleServiceStub")
    print(f"STUBS {sample_pb2.__file__.rsplit('/', 2)[0]}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
