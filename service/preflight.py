"""What `fgrm serve` checks before it starts any worker.

A configuration mistake that makes a worker fail while it starts does not stop `bentoml serve`:
it logs the traceback and starts the worker again, every 10 s, for ever (measured: a feedback
type whose checkpoint had lost its encoder, or a profile weight written as a string, looped so
for as long as it was left). So the mistakes a worker would die of at start-up are looked for
here, once, in the `fgrm serve` process, and reported as one line naming the file and the key.

`taken_port` then tries the HTTP and gRPC ports: a taken gRPC port is one more start-up failure
that loops (each worker binds it in a start-up hook), and BentoML reports a taken HTTP port with
a traceback.

Only reads: the feedback-types file, the profile tables, and each checkpoint's metadata and
weight files (`models.checkpoint.check`, which hashes pinned encoder weights: under a second for
the shipped MiniLM). Nothing is loaded or exported; a worker can still fail later for reasons
that only loading shows (e.g. an ONNX export that fails), and its log says so.
"""

from __future__ import annotations

import errno
import socket
import tomllib
from pathlib import Path

from service.config import Settings


def problem(settings: Settings) -> str | None:
    """The first configuration mistake that would stop every worker from starting; None if none."""
    from models.checkpoint import check
    from models.config import load_feedback_types
    from models.errors import ConfigError
    from service.errors import InvalidInput
    from service.profiles import Profiles

    try:
        types = load_feedback_types(settings.feedback_types)
    except (ConfigError, OSError) as exc:
        return f"feedback types ({settings.feedback_types}): {exc}"
    for t in types:
        if t.kind == "prefix_delta":  # a Hugging Face sequence classifier, loaded by transformers
            if not (Path(t.checkpoint) / "config.json").is_file():
                return (f"feedback type {t.name!r}: {t.checkpoint} has no config.json (a Hugging Face "
                        "sequence-classification directory)")
            continue
        try:
            check(t.checkpoint)  # its messages start with the checkpoint's path
        except (OSError, ValueError) as exc:
            return f"feedback type {t.name!r}: {exc}"
    files = [settings.feedback_types, settings.profiles]
    try:
        # the file profiles only: the writable store is the workers' to open
        Profiles.from_files({t.name: float(t.weight) for t in types}, files)
    except (InvalidInput, OSError, tomllib.TOMLDecodeError) as exc:
        named = ", ".join(str(p) for p in files if p is not None)
        return f"profiles ({named}): {exc}"
    return None


def taken_port(settings: Settings) -> str | None:
    """Which of the server's ports cannot be bound now (say, another server holds it); None if
    both can. A socket of another process with SO_REUSEPORT counts as taken too: this one is bound
    without it, as a one-worker server binds it (service.grpc_server.start)."""
    for what, flag, host, port in (("HTTP", "http", settings.http_host, settings.http_port),
                                   ("gRPC", "grpc", settings.grpc_host, settings.grpc_port)):
        if not port:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no owner
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"{what} port {host}:{port} is in use (another server on it?); choose another with --{flag}-port"
                return (f"{what} address {host}:{port} cannot be bound ({exc.strerror or exc}); "
                        f"check --{flag}-host and --{flag}-port")
    return None
