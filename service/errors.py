"""The service's error vocabulary: every failure a client can see is one of these.

The engine raises them; each transport maps them exactly once (HTTP: `service.http.error_response`,
gRPC: `service.grpc_server`). Messages are written for the caller: they name the offending
field or the limit that was hit, and never carry a traceback.
"""

from __future__ import annotations


# Errors quote what was wrong, and inputs can be huge: a field path or message is cut to a prefix
# so that no error body (or gRPC status, whose metadata has a size limit) echoes a request back.
MAX_FIELD = 120
MAX_MESSAGE = 600


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(value: object, limit: int = 40) -> str:
    """repr() of a caller's value for an error message, cut to a short prefix."""
    return repr(clip(value, limit)) if isinstance(value, str) else clip(repr(value), limit)


class ServiceError(Exception):
    """Base class. `kind` is the stable, machine-readable name sent to clients."""

    kind = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message}


class InvalidInput(ServiceError):
    """The request is wrong; `field` is a path into it such as ``items[3].token_offsets[7]``."""

    kind = "invalid_input"

    def __init__(self, field: str, message: str):
        field = clip(field, MAX_FIELD)
        super().__init__(clip(f"{field}: {message}", MAX_MESSAGE))
        self.field = field

    def as_dict(self) -> dict:
        return {"kind": self.kind, "field": self.field, "message": self.message}


class PayloadTooLarge(InvalidInput):
    """A request body over `max_body_bytes`, refused before it is read whole (HTTP 413)."""

    kind = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    """A form-encoded or multipart body where JSON is expected (HTTP 415)."""

    kind = "unsupported_media_type"


class Overloaded(ServiceError):
    """The bounded queue is full; the request was refused without doing any work."""

    kind = "overloaded"


class NotReady(ServiceError):
    """Models are not loaded yet (or the engine is shutting down)."""

    kind = "not_ready"


class Unauthorized(ServiceError):
    """An admin operation without the configured admin token."""

    kind = "unauthorized"


class NotFound(ServiceError):
    """A path this service does not have."""

    kind = "not_found"


class Forbidden(ServiceError):
    """An operation this server has switched off (profile writes without an admin token)."""

    kind = "forbidden"


class DeadlineExceeded(ServiceError):
    """The caller's deadline passed before the result was ready; its queued work was dropped."""

    kind = "deadline_exceeded"


class BackendFailure(ServiceError):
    """The model runtime failed. The cause goes to the server log, not to the client."""

    kind = "backend_failure"


KINDS = tuple(cls.kind for cls in (InvalidInput, PayloadTooLarge, UnsupportedMediaType, Overloaded, NotReady,
                                  Unauthorized, Forbidden, NotFound, DeadlineExceeded, BackendFailure))
