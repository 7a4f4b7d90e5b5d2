"""Every error the fgrm clients raise, so a trainer can catch exactly what it can handle.

    FgrmError                  base class; ``except FgrmError`` catches everything below
    ├── InvalidInput           the service rejected the request (HTTP 400/422, INVALID_ARGUMENT);
    │                          ``.field`` names the offending field, e.g. ``items[3].response``.
    │                          Never retried: sending it again gives the same answer.
    ├── Overloaded             the service refused work because its queue is full (HTTP 429,
    │                          RESOURCE_EXHAUSTED), still refused after the client's retries.
    ├── Unavailable            no usable answer from any replica: connection refused or reset,
    │                          HTTP 503, gRPC UNAVAILABLE, still failing after the retries.
    │   └── NotReady           the service is up but its models are not loaded yet.
    ├── Timeout                a request (or ``wait_until_ready``) ran past its deadline.
    │                          Not retried: the service may still be working on it, and a
    │                          retry would double the load exactly when it is slow.
    ├── Unauthorized           an admin operation without the right token (HTTP 401/403,
    │                          UNAUTHENTICATED / PERMISSION_DENIED).
    ├── ServerError            the service failed while scoring (HTTP 5xx other than 503,
    │                          gRPC INTERNAL / UNKNOWN), e.g. a backend failure.
    └── ProtocolError          the answer did not match the wire format this client speaks
                               (a version mismatch, or not an fgrm service at that address).

Every instance carries ``.message`` (the service's message when it sent one), ``.endpoint``
(the URL or gRPC method), ``.status`` (HTTP status or gRPC code name, ``None`` when no answer
came back) and ``.attempts`` (how many tries were made).
"""

from __future__ import annotations


class FgrmError(Exception):
    """Base class of every error raised by ``fgrm_client``."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status
        self.attempts = attempts

    def __str__(self) -> str:
        where = f" ({self.endpoint}" if self.endpoint else ""
        if where:
            if self.status is not None:
                where += f", status {self.status}"
            if self.attempts > 1:
                where += f", after {self.attempts} attempts"
            where += ")"
        return f"{self.message}{where}"


class InvalidInput(FgrmError):
    """The request itself is wrong; ``field`` says where (``None`` if the service did not say)."""

    def __init__(self, message: str, *, field: str | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.field = field

    def __str__(self) -> str:
        base = super().__str__()
        # The service's own messages already start with the field; do not say it twice.
        if self.field and not self.message.startswith(self.field):
            return f"{self.field}: {base}"
        return base


class Overloaded(FgrmError):
    """The service's admission queue is full; slow down or add replicas."""


class Unavailable(FgrmError):
    """No replica answered usefully (connection failure, 503, UNAVAILABLE)."""


class NotReady(Unavailable):
    """The service is running but not ready to score yet (models still loading)."""


class Timeout(FgrmError):
    """A deadline passed before the answer came back."""


class Unauthorized(FgrmError):
    """The service refused an admin operation (missing or wrong token)."""


class ServerError(FgrmError):
    """The service failed while handling a valid request."""


class ProtocolError(FgrmError):
    """The answer does not follow the fgrm wire format."""


__all__ = [
    "FgrmError",
    "InvalidInput",
    "Overloaded",
    "Unavailable",
    "NotReady",
    "Timeout",
    "Unauthorized",
    "ServerError",
    "ProtocolError",
]
