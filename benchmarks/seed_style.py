"""The baseline users would build from the paper's code: one reward model per feedback type.

The FINE-GRAINED RLHF code (Wu et al. 2023) scores QA-Feedback with three separate reward
models, one per feedback type, each a token- or sequence-level classifier over the packed input
"question + passages + response" (sub-sentence markers for relevance, sentence markers for
factuality, the whole sequence for completeness), called one after another for every response.
This server does exactly that work with models of our backbone's size:

- three models, one per type, each its own ONNX Runtime (or torch) session of a MiniLM-L6
  reward network: `artifacts/fgrm-qa-minilm`, the project's earlier network fine-tuned on that
  packed input (<= 512 tokens, 475 on average for dev items). Its weights are loaded three
  times, once per type, and each type reads only its own head, so a request costs three full
  forward passes, as three separately fine-tuned models would (same shapes, same FLOPs);
- batch size 1, one request at a time (the naive server's Starlette app and lock, and the
  same `/v1/score` JSON), the mixing weights and reward values of models/feedback_types.toml.

Its rewards are that network's, not the shipped signal model's, so the benchmark checks them
against the same three models run in-process (`reference`), not against the service.

    python -m benchmarks.seed_style --port 3002 --runtime onnx
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from pathlib import Path

log = logging.getLogger("fgrm.seed")
REPO = Path(__file__).resolve().parent.parent
SEED_CHECKPOINT = REPO / "artifacts" / "fgrm-qa-minilm"


def build_engine(runtime: str = "auto", checkpoint: str | Path = SEED_CHECKPOINT):
    """A ScoringEngine with one FgrmScorer per feedback type, each on its own loaded model."""
    from models.runtime import load
    from models.config import load_feedback_types
    from service.config import Settings
    from service.engine import ScoringEngine
    from service.scorers import FgrmScorer

    settings = Settings.from_env(runtime=runtime)
    scorers = []
    for t in load_feedback_types(settings.feedback_types):
        t = dataclasses.replace(t, checkpoint=Path(checkpoint))
        # a fresh load per type: separate sessions, as separately trained models would need
        scorers.append(FgrmScorer([t], load(checkpoint, runtime, use_passages=True)))
    return ScoringEngine(settings, scorers=scorers)


@contextlib.contextmanager
def seed_server(runtime: str, workdir: Path, env: dict[str, str]):
    """This module's server as a subprocess on a free port, ready."""
    from benchmarks import launch

    port = launch.free_port()
    cmd = [sys.executable, "-m", "benchmarks.seed_style", "--port", str(port), "--runtime", runtime]
    with launch.run_server(cmd, workdir, port, env=env) as handle:
        yield handle


def main(argv: list[str] | None = None) -> int:
    from benchmarks.naive_server import serve

    return serve(argv, build_engine, "seed-style server", __doc__.split("\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())
