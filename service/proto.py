"""Generate (if stale) and import the gRPC stubs of ``service/fgrm.proto``.

The stubs live in ``service/_proto/`` (git-ignored) and are produced by grpc_tools.protoc on
first use, so they always match the proto and are never edited by hand. The proto is compiled
under the virtual path ``service/_proto/fgrm.proto`` so that the generated ``*_pb2_grpc.py``
imports ``service._proto.fgrm_pb2`` (a package import) instead of a bare ``fgrm_pb2``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
from pathlib import Path
from types import ModuleType

PROTO = Path(__file__).with_name("fgrm.proto")
OUT_DIR = Path(__file__).with_name("_proto")
_STAMP = OUT_DIR / "SOURCE_SHA256"


def _proto_digest() -> str:
    return hashlib.sha256(PROTO.read_bytes()).hexdigest()


def generate(force: bool = False) -> Path:
    """Compile the proto into ``service/_proto/`` unless the stubs are already current.

    Safe to call from several processes at once (BentoML workers): a file lock serialises them.
    """
    OUT_DIR.mkdir(exist_ok=True)
    digest = _proto_digest()
    with open(OUT_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and _STAMP.exists() and _STAMP.read_text().strip() == digest:
            return OUT_DIR
        from grpc_tools import protoc  # build-time dependency only

        root = PROTO.parent.parent  # repository (or bento) root
        args = [
            "grpc_tools.protoc",
            f"-I{protoc._get_resource_file_name('grpc_tools', '_proto')}",
            f"-Iservice/_proto={PROTO.parent}",
            f"--python_out={root}",
            f"--pyi_out={root}",
            f"--grpc_python_out={root}",
            "service/_proto/fgrm.proto",
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {PROTO}")
        (OUT_DIR / "__init__.py").write_text("# Generated from service/fgrm.proto; do not edit.\n")
        _STAMP.write_text(digest + "\n")
    importlib.invalidate_caches()
    return OUT_DIR


def stubs() -> tuple[ModuleType, ModuleType]:
    """Return ``(fgrm_pb2, fgrm_pb2_grpc)``, generating them first if needed."""
    generate()
    pb2 = importlib.import_module("service._proto.fgrm_pb2")
    pb2_grpc = importlib.import_module("service._proto.fgrm_pb2_grpc")
    return pb2, pb2_grpc


if __name__ == "__main__":  # `python -m service.proto` regenerates unconditionally
    print(generate(force=True))
