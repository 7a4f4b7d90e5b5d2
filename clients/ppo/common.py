"""What sft.py and train_ppo.py share: QA-Feedback prompts, the held-out split, the prompt
format, and a dataclass -> command line helper (docstrings under fields become --help)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
from pathlib import Path

# the QA-Feedback files the repository carries (data/qa_feedback/README.md)
DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "data" / "qa_feedback")


def load_qa(data_dir: str | Path = DEFAULT_DATA) -> tuple[list[dict], list[dict]]:
    """(train, held_out) QA-Feedback examples: ``question``, ``passages`` (texts), ``answer``.

    Held out are the dev.json questions that do not appear in dev_feedback.json, i.e. the ones
    the reward models were not trained on either, so a reward gain there is not memorisation.
    """
    data_dir = Path(data_dir)
    dev = json.loads((data_dir / "dev.json").read_text())
    fb_path = data_dir / "dev_feedback.json"
    seen = {x["question"] for x in json.loads(fb_path.read_text())} if fb_path.exists() else set()
    train, held = [], []
    for i, x in enumerate(dev):
        ex = {
            "question": x["question"],
            "passages": [p["content"] if isinstance(p, dict) else str(p) for p in x["passages"]],
            "answer": x["answer"][0] if isinstance(x["answer"], list) else x["answer"],
        }
        in_train = x["question"] in seen if seen else i % 5 != 0
        (train if in_train else held).append(ex)
    return train, held


def prompt_text(question: str) -> str:
    """The policy sees the question only: passages (~600 tokens) are too long for a CPU policy."""
    return f"question: {question} answer:"


def load_tokenizer(path: str):
    """An HF tokenizer ready for causal-LM use: BERT-style vocabularies have no eos/bos, so
    [SEP] / [CLS] take those roles (generation stops at [SEP])."""
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(path))


def prepare_tokenizer(tok):
    if tok.eos_token is None:
        tok.eos_token = tok.sep_token
    if tok.bos_token is None:
        tok.bos_token = tok.cls_token or tok.eos_token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def prompt_ids(tok, question: str, max_tokens: int) -> list[int]:
    """BOS + the prompt's tokens (truncated): what the policy is conditioned on."""
    ids = tok(prompt_text(question), add_special_tokens=False)["input_ids"][:max_tokens]
    return [tok.bos_token_id] + ids


def _field_docs(cls) -> dict[str, str]:
    """Docstrings written under dataclass fields (cleanrl style), read from the source."""
    docs: dict[str, str] = {}
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and \
                isinstance(getattr(nxt, "value", None), ast.Constant):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def parse_args(cls, argv=None):
    """Build the dataclass ``cls`` from the command line: one ``--field`` per field."""
    parser = argparse.ArgumentParser(description=(cls.__doc__ or "").strip())
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"),
                                default=default, metavar="BOOL", help=docs.get(f.name, ""))
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(flag, type=kind, default=default, help=docs.get(f.name, ""))
    return cls(**vars(parser.parse_args(argv)))
