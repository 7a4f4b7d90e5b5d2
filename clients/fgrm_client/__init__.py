"""fgrm_client: the trainer side of fgrm (fine-grained reward serving).

    from fgrm_client import HttpClient
    with HttpClient("http://127.0.0.1:3000") as client:
        client.wait_until_ready(timeout=60)
        [result] = client.score([{"question": q, "passages": ps, "response": r}],
                                weights={"relevance": 2.0})

The gRPC clients (``GrpcClient``, ``AsyncGrpcClient``) are imported lazily from
``fgrm_client.grpc`` so that HTTP-only users never generate protobuf stubs. Nothing in this
package imports torch, transformers or bentoml.
"""

from ._retry import NO_RETRY, RetryPolicy
from .errors import (
    FgrmError,
    InvalidInput,
    NotReady,
    Overloaded,
    ProtocolError,
    ServerError,
    Timeout,
    Unauthorized,
    Unavailable,
)
from .http import AsyncHttpClient, HttpClient
from .types import Event, FeedbackTypeInfo, Item, ItemResult, Mixed, Segment, TypeResult

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("GrpcClient", "AsyncGrpcClient"):
        from . import grpc as _grpc

        return getattr(_grpc, name)
    raise AttributeError(f"module 'fgrm_client' has no attribute {name!r}")


__all__ = [
    "AsyncGrpcClient", "AsyncHttpClient", "Event", "FeedbackTypeInfo", "FgrmError", "GrpcClient",
    "HttpClient", "InvalidInput", "Item", "ItemResult", "Mixed", "NO_RETRY", "NotReady",
    "Overloaded", "ProtocolError", "RetryPolicy", "Segment", "ServerError", "Timeout",
    "TypeResult", "Unauthorized", "Unavailable",
]
