"""The baseline the service is measured against: a reward-model server the way most are written.

One process, one model, one request at a time: each `POST /v1/score` segments, encodes and runs
the model on its own items with batch size 1 (no batching across requests, no queue, no
token budget), under a lock, as a Starlette app on uvicorn. It speaks the service's JSON wire
format (`/v1/score`, `/readyz`), so the benchmark drives both with the same `fgrm_client`
load, and it uses the service's own scoring code for one item (`ScoringEngine.score_sync`) so
the rewards, and the work per item, are the same; only the serving around the model differs.

    python -m benchmarks.naive_server --port 3001 --runtime torch
"""

from __future__ import annotations

import argparse
import logging
import threading

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger("fgrm.naive")


def make_app(engine) -> Starlette:
    """A Starlette app scoring each request's items one forward pass per item, one request at a time."""
    from pydantic import TypeAdapter, ValidationError

    from service.errors import ServiceError
    from service.schemas import ItemIn

    items_adapter = TypeAdapter(list[ItemIn])
    lock = threading.Lock()  # the model serves one request at a time

    def score_serially(items):
        with lock:
            return [engine.score_sync([item])[0] for item in items]  # batch size 1, always

    async def score(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            items = [i.to_domain() for i in items_adapter.validate_python(body.get("items"))]
            results = await run_in_threadpool(score_serially, items)
        except ValidationError as exc:
            return JSONResponse({"error": {"kind": "invalid_input", "message": str(exc)}}, status_code=400)
        except ServiceError as exc:
            return JSONResponse({"error": {"kind": exc.kind, "message": str(exc)}}, status_code=400)
        return JSONResponse({"results": [r.as_dict() for r in results]})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    return Starlette(routes=[Route("/v1/score", score, methods=["POST"]), Route("/readyz", ready)])


def serve(argv: list[str] | None, build_engine, what: str, description: str) -> int:
    """Parse --host/--port/--runtime, build the engine before the port opens, serve `make_app`
    (shared by this server and benchmarks.seed_style)."""
    import uvicorn

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--runtime", default="auto", help="auto | torch | onnx | onnx-int8")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    engine = build_engine(args.runtime)
    backend = engine.scorers[0].backend
    log.info("%s: %d model(s), %s on %s", what, len(engine.scorers), backend.name, backend.provider)
    uvicorn.run(make_app(engine), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    from service.config import Settings
    from service.engine import ScoringEngine

    return serve(argv, lambda runtime: ScoringEngine(Settings.from_env(runtime=runtime)), "naive server",
                 __doc__.split("\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())
