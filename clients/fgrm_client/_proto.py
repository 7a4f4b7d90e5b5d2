"""The gRPC message classes of ``fgrm.v1``, built at first use from the service's proto.

No generated ``*_pb2.py`` is committed or written into the package. Instead the proto is compiled
once by ``grpc_tools.protoc`` into a serialized ``FileDescriptorSet`` (cached under
``~/.cache/fgrm_client/``, keyed by the proto's hash), loaded into a *private* descriptor pool,
and the message classes are made from it. The private pool matters: the server's own stubs
register the same ``fgrm.v1.*`` names in protobuf's default pool, and a test process that
imports both would otherwise fail with "duplicate symbol".

The proto is ``fgrm_client/proto/fgrm.proto`` (a link to ``service/fgrm.proto`` in the
repository, copied into wheels), or the file named by ``FGRM_PROTO``. ``grpcio-tools`` is needed
only for the first compile on a machine (``pip install fgrm-client[grpc-codegen]``); with a
cached descriptor set, grpcio and protobuf suffice.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "fgrm.v1"
SERVICE = f"{PACKAGE}.RewardService"
_MESSAGES = (
    "Span", "TokenOffsets", "Item", "ScoreRequest", "ScoreResponse", "MixSegment",
    "MixComponent", "MixItem", "MixRequest", "MixResponse", "ListFeedbackTypesRequest",
    "ListFeedbackTypesResponse", "ListProfilesRequest", "ListProfilesResponse",
)


def proto_path() -> Path:
    env = os.environ.get("FGRM_PROTO")
    return Path(env) if env else Path(__file__).with_name("proto") / "fgrm.proto"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fgrm_client"


def _compile(proto: Path, out: Path) -> None:
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fgrm_client.grpc needs grpcio-tools once, to compile fgrm.proto "
            "(pip install 'fgrm-client[grpc-codegen]'); the HTTP client works without it"
        ) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_out = Path(tmp) / out.name
        args = [
            "grpc_tools.protoc",
            f"-I{proto.parent}",
            f"--descriptor_set_out={tmp_out}",
            proto.name,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {proto}")
        os.replace(tmp_out, out)  # atomic: concurrent first imports never read half a file


@lru_cache(maxsize=1)
def messages() -> SimpleNamespace:
    """The ``fgrm.v1`` message classes, as attributes (``messages().ScoreRequest`` ...)."""
    proto = proto_path()
    if not proto.is_file():
        raise FileNotFoundError(
            f"fgrm.proto not found at {proto}; set FGRM_PROTO to the service's proto file"
        )
    digest = hashlib.sha256(proto.read_bytes()).hexdigest()[:16]
    cached = _cache_dir() / f"fgrm-v1-{digest}.pb"
    if not cached.is_file():
        _compile(proto, cached)
    fds = descriptor_pb2.FileDescriptorSet.FromString(cached.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    return SimpleNamespace(
        **{
            name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in _MESSAGES
        }
    )
