"""QA-Feedback records → feature tables for the signal reward models (training and CV).

Per record: the signals of `prediction 1`'s sub-sentences with their relevance labels, of its
sentences with their factuality labels (paper's way and all sentences), and the response
signals of all four predictions with the record's non-tie preference pairs. Labels follow
models.data exactly (the same rules `fgrm eval` scores by).
"""
from __future__ import annotations

import re
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np

from models.data import IGNORE, error_spans, fold_of, label_response, passages_of, preference_pairs
from models.segment import sentences
from models.signal_model import item_features, item_texts
from models.signals import FRAGMENT_WORDS, SEGMENT_FEATURES, SUBSENTENCE_FEATURES, Context


@dataclass
class RecordTable:
    question: str
    fold: int
    rel_x: np.ndarray  # (n_subsentences, len(SUBSENTENCE_FEATURES)): signals in their answer's context
    rel_y: np.ndarray
    fact_x: np.ndarray  # (n_sentences, F)
    fact_y: np.ndarray  # paper's way: IGNORE where the sentence overlaps a relevance error
    fact_all_y: np.ndarray
    resp_x: dict[int, np.ndarray] = field(default_factory=dict)  # prediction number -> (R,)
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (preferred, other)
    seg_x: dict = field(default_factory=dict)  # prediction number (or "truncated") -> (sub, sent) signals
    # synthetic training rows (models.recipe: used for fitting only, never scored by the CV)
    aug_rel_x: np.ndarray | None = None
    aug_rel_y: np.ndarray | None = None
    aug_fact_x: np.ndarray | None = None  # synthetic factuality errors (one corrupted sentence each)
    aug_frag_x: np.ndarray | None = None  # synthetic relevance errors: the first words of prediction 1
    aug_pairs: list = field(default_factory=list)  # (preferred key, other key) of resp_x / seg_x


def item_signals(embed, question: str, passages: list[str], response: str, subs, sents, reference: str = ""):
    """(sub-sentence signals, sentence signals, response signals) of one item, computed exactly as
    the served model computes them; `embed` maps a list of texts to L2-normalised rows, or is None
    for the lexical signals only. Training passes each record's gold answer as `reference`: the
    reference signals fill their own columns, which only the reference heads read."""
    ctx = Context.of(question, passages, reference)
    emb = embed(item_texts(ctx, subs, sents, response)) if embed is not None else None
    return item_features(ctx, response, subs, sents, emb)


def _signals(embed, record: dict, response: str, subs, sents):
    """`item_signals` of `response` to `record`'s question, with the record's gold answer as the reference."""
    return item_signals(embed, record["question"], passages_of(record), response, subs, sents, record.get("gold") or "")


_NUM = re.compile(r"\b\d[\d,]*(?:\.\d+)?\b")
_NAME = re.compile(r"(?<=\s)[A-Z][a-z]{2,}(?:\s[A-Z][a-z]{2,})*")


def _corrupt(record: dict, ex, donor: dict | None) -> tuple[str, int] | None:
    """Prediction 1 with its first supported sentence (factuality label 0) made wrong: a number
    changed, or else a name swapped for one from another question's passages. Returns (text,
    start of the corrupted sentence) or None when no sentence lends itself."""
    labels = {s.start: lab for s, lab in zip(ex.subsentences, ex.factuality)}
    donor_names = []
    if donor is not None:
        own = " ".join(passages_of(record))
        donor_names = [m for m in _NAME.findall(" ".join(passages_of(donor))) if m not in own]
    for sent in sentences(ex.response):
        if labels.get(sent.start) != 0:
            continue
        m = _NUM.search(sent.text)
        if m:
            digits = m.group().replace(",", "")
            value = float(digits) if "." in digits else int(digits)
            new = str(value + 13 if value > 1000 else value * 3 + 7)
        else:
            m = _NAME.search(sent.text)
            if not m or not donor_names:
                continue
            new = donor_names[len(sent.text) % len(donor_names)]
        fixed = sent.text[: m.start()] + new + sent.text[m.end():]
        return ex.response[: sent.start] + fixed + ex.response[sent.end:], sent.start
    return None


def _augment(table: RecordTable, record: dict, ex, donor: dict | None, embed) -> None:
    """Synthetic contrasts that spell out what the labels mean, for training only:

    - off-topic: prediction 1 followed by the first sentence of another question's answer, and
      that other answer alone under this question: the foreign sub-sentences are relevance
      errors ("Irrelevant");
    - repeated: prediction 1 followed by a copy of its own first sentence: the copy is a
      relevance error ("Redundant");
    - a wrong fact: prediction 1 with a supported sentence's number changed or a name swapped
      for one from another question's passages: that sentence is a factuality error;
    - truncated: each prediction is preferred over its own first sentence (completeness is
      coverage: the cut answer says less of what the passages say), and over the question
      said back as a statement ("echo"; used by the recipe signals-lr-echo only);
    - fragments: the first 1 to FRAGMENT_WORDS - 1 words of prediction 1, each alone as an answer,
      are relevance errors (a piece of an answer is not an answer; kept apart from the rows
      above because the recipe fits only the `fragment` flag's weight on them).
    """
    resp = ex.response
    sents = sentences(resp)
    if not sents:
        return
    xs, ys = [], []

    def add(text: str, labels_of_new):
        new = label_response(record, text, None)
        sub_x = _signals(embed, record, text, new.subsentences, sentences(text))[0]
        ys.append(np.array([labels_of_new(s) for s in new.subsentences], dtype=np.int64))
        xs.append(sub_x)

    old = {s.start: lab for s, lab in zip(ex.subsentences, ex.relevance)}
    cut = len(resp.rstrip())
    if donor is not None:
        foreign = sentences(donor["prediction 1"])
        if foreign:
            add(resp.rstrip() + " " + foreign[0].text, lambda s: old.get(s.start, IGNORE) if s.start < cut else 1)
            add(donor["prediction 1"], lambda s: 1)
    add(resp.rstrip() + " " + sents[0].text, lambda s: old.get(s.start, IGNORE) if s.start < cut else 1)
    table.aug_rel_x = np.concatenate(xs)
    table.aug_rel_y = np.concatenate(ys)
    table.aug_frag_x = _fragments(record, resp, embed)
    corrupted = _corrupt(record, ex, donor)
    if corrupted is not None:
        text, start = corrupted
        new_sents = sentences(text)
        tx = _signals(embed, record, text, label_response(record, text, None).subsentences, new_sents)[1]
        table.aug_fact_x = tx[[k for k, s in enumerate(new_sents) if s.start == start]]
    _preference_contrasts(table, record, embed)


def _preference_contrasts(table: RecordTable, record: dict, embed) -> None:
    """The synthetic completeness pairs of `_augment` (training only)."""
    q = record["question"]
    answered = [k for k in (1, 2, 3, 4) if (record.get(f"prediction {k}") or "").strip()]
    # completeness means coverage: each prediction says more than its own first sentence
    for k in (1, 2, 3, 4):
        text = record.get(f"prediction {k}") or ""
        own = sentences(text)
        if len(own) < 2:
            continue
        first = own[0].text
        subs = label_response(record, first, None).subsentences
        key = f"truncated-{k}"
        sx, tx, table.resp_x[key] = _signals(embed, record, first, subs, sentences(first))
        table.seg_x[key] = (sx, tx)
        table.aug_pairs.append((k, key))
    # ...and more than the question it was asked: the question said back as an answer covers
    # nothing (recipe signals-lr-echo; not shipped: docs/quality/README.md, "What else a policy could write")
    echo = q.strip().rstrip("?").strip()
    if echo:
        echo += "."
        subs = label_response(record, echo, None).subsentences
        sx, tx, table.resp_x["echo"] = _signals(embed, record, echo, subs, sentences(echo))
        table.seg_x["echo"] = (sx, tx)
        table.aug_pairs += [(k, "echo") for k in answered]
    # ...and more than nothing at all: each answer over the blank one (scored as the service
    # scores a blank response: no segments, the response's own signals)
    sx, tx, table.resp_x["blank"] = _signals(embed, record, "", [], [])
    table.seg_x["blank"] = (sx, tx)
    table.aug_pairs += [(k, "blank") for k in answered]


def _fragments(record: dict, response: str, embed) -> np.ndarray:
    """Sub-sentence signals of the response's first 1 .. FRAGMENT_WORDS - 1 words, each scored
    alone as an answer (one row each; fewer when the response is that short)."""
    words = response.split()
    rows = [np.zeros((0, len(SUBSENTENCE_FEATURES)))]
    for n in range(1, min(FRAGMENT_WORDS, len(words))):
        text = " ".join(words[:n])
        subs = label_response(record, text, None).subsentences
        rows.append(_signals(embed, record, text, subs, sentences(text))[0])
    x = np.concatenate(rows)
    # "1,500" is one word to str.split and two to the signals: keep what the flag calls a fragment
    return x[x[:, SUBSENTENCE_FEATURES.index("fragment")] > 0.5]


def record_table(record: dict, embed, n_folds: int = 5, donor: dict | None = None,
                 augment: bool = True) -> RecordTable:
    q = record["question"]
    ex = label_response(record, record["prediction 1"], error_spans(record))
    sents = sentences(ex.response)
    sub_x, sent_x, resp1 = _signals(embed, record, ex.response, ex.subsentences, sents)
    start_to_sub = {s.start: k for k, s in enumerate(ex.subsentences)}
    fact_y = np.array([ex.factuality[start_to_sub[s.start]] for s in sents], dtype=np.int64)
    fact_all_y = np.array([ex.factuality_all[start_to_sub[s.start]] for s in sents], dtype=np.int64)
    table = RecordTable(q, fold_of(q, n_folds), sub_x, np.array(ex.relevance, dtype=np.int64), sent_x,
                        fact_y, fact_all_y, {1: resp1}, preference_pairs(record), {1: (sub_x, sent_x)})
    for k in (2, 3, 4):
        resp = record.get(f"prediction {k}") or ""
        other = label_response(record, resp, None)
        sx, tx, table.resp_x[k] = _signals(embed, record, resp, other.subsentences, sentences(resp))
        table.seg_x[k] = (sx, tx)
    if augment:
        _augment(table, record, ex, donor, embed)
    return table


def build_tables(records: list[dict], embed, n_folds: int = 5, progress: bool = True) -> list[RecordTable]:
    from tqdm import tqdm
    import sys

    # each record's off-topic donor is the next record of the same fold with another question, so
    # that no fold's training rows carry text from another fold
    by_fold: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_fold.setdefault(fold_of(r["question"], n_folds), []).append(i)
    donors: dict[int, dict | None] = {}
    for members in by_fold.values():
        for j, i in enumerate(members):
            cands = [members[(j + d) % len(members)] for d in range(1, len(members))]
            donors[i] = next((records[c] for c in cands if records[c]["question"] != records[i]["question"]), None)
    it = tqdm(list(enumerate(records)), desc="signals", file=sys.stderr, mininterval=5, disable=not progress)
    return [record_table(r, embed, n_folds, donors[i]) for i, r in it]


def synthetic_relevance(tables: list[RecordTable]) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the synthetic relevance rows (training only)."""
    xs = [t.aug_rel_x[t.aug_rel_y != IGNORE] for t in tables if t.aug_rel_x is not None]
    ys = [t.aug_rel_y[t.aug_rel_y != IGNORE] for t in tables if t.aug_rel_x is not None]
    if not xs:
        return np.zeros((0, len(SUBSENTENCE_FEATURES))), np.zeros(0, dtype=np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def synthetic_fragments(tables: list[RecordTable]) -> np.ndarray:
    """Signals of the synthetic fragment answers (relevance label 1; training only)."""
    xs = [t.aug_frag_x for t in tables if t.aug_frag_x is not None]
    return np.concatenate(xs) if xs else np.zeros((0, len(SUBSENTENCE_FEATURES)))


def synthetic_factuality(tables: list[RecordTable]) -> np.ndarray:
    """Signals of the synthetic factuality errors (label 1; training only)."""
    xs = [t.aug_fact_x for t in tables if t.aug_fact_x is not None and len(t.aug_fact_x)]
    return np.concatenate(xs) if xs else np.zeros((0, len(SEGMENT_FEATURES)))


def features_of(kind: str) -> tuple[str, ...]:
    """The column names of `stack(tables, kind)`: sub-sentences carry their context, sentences do not."""
    return SUBSENTENCE_FEATURES if kind == "relevance" else SEGMENT_FEATURES


def stack(tables: list[RecordTable], kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, group fold) over the labelled rows of `kind` ("relevance" | "factuality" | "factuality_all")."""
    xs, ys, gs = [], [], []
    for t in tables:
        x, y = {"relevance": (t.rel_x, t.rel_y), "factuality": (t.fact_x, t.fact_y),
                "factuality_all": (t.fact_x, t.fact_all_y)}[kind]
        keep = y != IGNORE
        xs.append(x[keep])
        ys.append(y[keep])
        gs.append(np.full(int(keep.sum()), t.fold))
    width = len(features_of(kind))
    return (np.concatenate(xs) if xs else np.zeros((0, width)), np.concatenate(ys) if ys else np.zeros(0),
            np.concatenate(gs) if gs else np.zeros(0))


def embedding_cache_path(explicit: str | None, backbone: str | None = None) -> Path:
    """The embeddings cache of an encoder (default: the shipped MiniLM), named by its weights' sha256."""
    from models.checkpoint import sha256_file
    from models.embedding import MAX_TOKENS, default_backbone
    from models.runtime.onnx_backend import cache_dir

    if explicit:
        return Path(explicit)
    weights = Path(backbone or default_backbone()) / "model.safetensors"
    return cache_dir() / f"embeddings-{sha256_file(weights)[:12]}-{MAX_TOKENS}.npz"


def build_with_cache(records: list[dict], cache: Path, threads: int = 0,
                     backbone: str | None = None) -> list[RecordTable]:
    """Feature tables of `records`, embedding with the frozen encoder (`backbone`, default the
    shipped MiniLM; disk cache by text)."""
    from models.embedding import TextEmbedder

    embedder = TextEmbedder(backbone=backbone, threads=threads or None)
    if cache.is_file():
        embedder.load(cache)
    before = len(embedder.cache)
    tables = build_tables(records, embedder)
    if len(embedder.cache) > before:
        cache.parent.mkdir(parents=True, exist_ok=True)
        embedder.save(cache)
    return tables
