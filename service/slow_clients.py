"""A deadline on request headers: connections that never finish their headers are closed.

uvicorn (which BentoML runs) arms no timer until a connection's first response is complete, and
it cancels its keep-alive timer at the first byte of the next request. A client that opens a
connection and drips its request line or headers a byte at a time (slowloris) therefore holds
the connection forever, and many such clients hold file descriptors and memory until the
process runs out. No ASGI middleware can help: the application is only called once the headers
are complete. So this patches uvicorn's HTTP protocol classes, once per process, with one timer
per request head:

- armed when the connection opens, and again at the first byte of each later request on a
  keep-alive connection;
- when it fires, a connection whose request has not started (no headers parsed yet) is closed;
  a request in progress is left alone: its body is bounded by `body_timeout_s`
  (service.middleware.RequestGateMiddleware) and its work by the caller's deadline.

Normal traffic never meets the timer: headers arrive in one packet. The patch wraps
`connection_made`, `data_received` and `connection_lost` and reads only the protocol's public
state (`cycle`, `transport`, `loop`); tests/service/test_hardening.py drives it with a real socket.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("fgrm.http")
_PATCHED: dict[type, float] = {}


def _between_requests(proto) -> bool:
    cycle = getattr(proto, "cycle", None)
    return cycle is None or getattr(cycle, "response_complete", False)


def _arm(proto, seconds: float) -> None:
    _disarm(proto)
    proto._fgrm_head_timer = proto.loop.call_later(seconds, _expire, proto)


def _disarm(proto) -> None:
    timer = getattr(proto, "_fgrm_head_timer", None)
    if timer is not None:
        timer.cancel()
        proto._fgrm_head_timer = None


def _expire(proto) -> None:
    proto._fgrm_head_timer = None
    transport = getattr(proto, "transport", None)
    if transport is None or transport.is_closing() or not _between_requests(proto):
        return
    log.info("closing a connection whose request headers did not arrive in time (header_timeout_s)")
    transport.close()


def _patch(cls: Any, seconds: float) -> None:
    made, received, lost = cls.connection_made, cls.data_received, cls.connection_lost

    def connection_made(self, transport):
        made(self, transport)
        _arm(self, seconds)

    def data_received(self, data):
        # the first bytes of a new request on a kept-alive connection start its clock; bytes of
        # a head already being timed do not reset it (a drip would otherwise never expire)
        if _between_requests(self) and getattr(self, "_fgrm_head_timer", None) is None:
            _arm(self, seconds)
        received(self, data)
        if not _between_requests(self):
            _disarm(self)  # headers complete: the request is in the application's hands

    def connection_lost(self, exc):
        _disarm(self)
        lost(self, exc)

    cls.connection_made, cls.data_received, cls.connection_lost = connection_made, data_received, connection_lost


def time_out_slow_headers(seconds: float) -> None:
    """Patch every uvicorn HTTP/1.1 protocol class available in this process (idempotent)."""
    if seconds <= 0:
        return
    classes: list[Any] = []
    from uvicorn.protocols.http.h11_impl import H11Protocol

    classes.append(H11Protocol)
    try:  # only present with uvicorn[standard]; we do not install it, but a user might
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        classes.append(HttpToolsProtocol)
    except ImportError:
        pass
    for cls in classes:
        if cls not in _PATCHED:
            _patch(cls, seconds)
            _PATCHED[cls] = seconds
