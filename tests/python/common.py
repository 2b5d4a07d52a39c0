"""Shared helpers for the Python side of the interop tests.

These scripts run with the virtualenv made by ``setup-venv.sh`` (grpc-helper 2.3.1,
grpc-helper-api, grpcio-tools). They only ever talk to loopback addresses.
"""

import atexit
import getpass
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

# tests/python/common.py -> repository root is two levels up from this folder.
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
PROTO_DIR = REPO_ROOT / "proto"
SAMPLE_PROTO = "sample/sample.proto"  # relative to PROTO_DIR

LOOPBACK_IP = "127.0.0.1"


def loopback_only():
    """Keep grpc_helper from probing a public address for "its" IP.

    grpc_helper's ``get_current_ip()`` opens a UDP socket and connect()s it to 8.8.8.8 to read
    the local address it would route from (no packet is sent, but we stay on loopback anyway).
    The value only ends up in the ``ip`` call metadata, so pin it to 127.0.0.1. Both modules
    imported the function by name, so patch the bound names.
    """
    import grpc_helper.client
    import grpc_helper.manager

    def _loopback_ip(default: str = LOOPBACK_IP) -> str:
        return LOOPBACK_IP

    grpc_helper.client.get_current_ip = _loopback_ip
    grpc_helper.manager.get_current_ip = _loopback_ip


def client_metadata(name: str):
    """The RpcMetadata a grpc_helper RpcClient would build for ``name``, with ip pinned to loopback.

    Passing an RpcMetadata instance as RpcClient's ``name`` skips its IP probe. The keys sent on
    every call are then: client, user, host, ip (+ api_version per stub); empty values are omitted.
    """
    from grpc_helper.meta import RpcMetadata

    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry: grpc_helper falls back to the uid too
        user = str(os.getuid())
    return RpcMetadata(client=name, user=user, host=socket.gethostname(), ip=LOOPBACK_IP)


def generate_sample_stubs(out_dir=None):
    """Generate the Python stubs for proto/sample/sample.proto and import them.

    Only ``sample/sample.proto`` is compiled: its import of ``grpc_helper_api/common.proto`` is
    served by the installed grpc-helper-api package (module ``grpc_helper_api.common_pb2``, whose
    descriptor is registered under that same file name), so both sides share the same message
    classes (Empty, Result, ResultStatus...).

    Returns the modules ``(sample.sample_pb2, sample.sample_pb2_grpc)``. ``out_dir`` defaults to a
    fresh temporary directory removed at exit; it is put first on ``sys.path``.
    """
    import grpc_tools
    from grpc_tools import protoc

    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="grpc-helper-stubs-")
        atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / SAMPLE_PROTO),
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"protoc failed (rc={rc}) on {PROTO_DIR / SAMPLE_PROTO}: {' '.join(args)}")

    # protoc writes <out>/sample/sample_pb2.py; make "sample" a regular package so that an
    # unrelated "sample" namespace directory elsewhere on sys.path can't shadow or merge with it.
    package_dir = out_dir / "sample"
    (package_dir / "__init__.py").touch()

    if str(out_dir) not in sys.path:
        sys.path.insert(0, str(out_dir))
    for mod in ("sample", "sample.sample_pb2", "sample.sample_pb2_grpc"):
        sys.modules.pop(mod, None)
    import importlib

    sample_pb2 = importlib.import_module("sample.sample_pb2")
    sample_pb2_grpc = importlib.import_module("sample.sample_pb2_grpc")
    return sample_pb2, sample_pb2_grpc


def client_args(description: str, timeout: float = 5.0):
    """The options of every interop client: --host, --port, --timeout (seconds)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default=LOOPBACK_IP)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=timeout)
    return parser.parse_args()


def run(main) -> None:
    """Exits with main()'s code; any exception prints its traceback and exits 1."""
    import traceback

    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(1)
