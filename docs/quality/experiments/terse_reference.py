"""Experiment: what the reference heads do with a reference that is not a long gold answer.

The `@reference` heads (recipe signals-lr-reference) learnt QA-Feedback's `gold`, ASQA's long
human-written answers (~70 words). Trainers' labels are often terse: veRL's `ground_truth`,
slime's `label` and most QA sets carry a short answer ("August 31, 2018"). Same 5-fold CV by
question as `fgrm eval --cv 5`: each fold's heads are fitted on the training folds with the full
gold answers (as `fgrm train` does), then the test fold is scored with, as the reference:

- `full`: the record's gold answer (what the CV table reports);
- `first`: the gold answer's first sentence only (~25 words);
- `terse`: a short answer cut from the gold answer, 1-5 words: for a when / how-many question
  its first date or number phrase, for any other its first capitalised name not in the
  question (then the other kind), else its first 3 content words outside the question (a
  stand-in for a short-answer label, which QA-Feedback does not have);
- `other`: another question's gold answer (a wrong reference: a data-loader bug);
- `wordsK`: the gold answer's first words up to its K-th content word (K = 2 ... 24);
- `none`: no reference (the reference-free heads, what the service serves then).

Each reference row is scored by the reference heads alone and, `served`, as the service scores
it: an item whose reference has fewer distinct content words than the floor
(`Recipe.relevance_reference_min_words`; `--floors=8,10,12` compares others) gets its relevance
from the reference-free head, each P(error) judged by its own head's threshold; an item whose
reference shares less than `Recipe.reference_min_context_share` of its content words with the
question and passages (`--shares=0.25,0.4` compares others) is scored by the reference-free heads,
every type, as if it had none. Last, the guard's measure itself over all 400 records, for their
own gold answers and for another question's: its percentiles and how many fall under each threshold.

    .venv/bin/python docs/quality/experiments/terse_reference.py --floors=8,10,12 --shares=0.25,0.4 \
        --plot=docs/quality/terse_reference.png > docs/quality/terse_reference.md    # ~5 min, embeddings cached

Measured 2026-11-28 (relevance AUC / accuracy, mean over the 5 folds; the full output is
docs/quality/terse_reference.md, a summary in the docs/quality/README.md, "Short references"): full
gold 0.887 / 0.801; first sentence 0.737 / 0.631; terse 0.674 / 0.505 (98 % of sub-sentences
flagged); another question's gold 0.634 / 0.491; no reference 0.723 / 0.612. Prefixes: 2 words
0.677, 4 0.683, 8 0.711, 12 0.731, 16 0.756, 24 0.800: the reference heads lose to no reference
below about 10 distinct content words. Served with the floor at 10: terse 0.723 / 0.612 (all
routed), first sentence 0.727 / 0.639, 8 words 0.721 / 0.612, 12 words 0.725 / 0.617, full 0.886
/ 0.801: no length is worse off than with no reference by more than 0.002 of AUC (floor 8: 8
words 0.697; floor 12: first sentence 0.713, 12 words 0.686, pooled over two heads).
Completeness reads any reference and orders pairs better with every one of them (terse 0.604, 2
words 0.585, against 0.554 without), a wrong one included (0.577).
Then the guard against another question's reference (share 0.3): another question's gold is
dropped for 99 % of records, relevance 0.722 / 0.610 instead of 0.632 / 0.492, completeness
0.554 instead of 0.577; full gold 0.885 / 0.801 (1 of 400 dropped), first sentence 0.728 / 0.640,
terse 0.723 / 0.612 with completeness 0.601 (11 % dropped); at 0.25 the wrong references'
relevance is 0.718, at 0.4 the full gold's 0.882 (3 % dropped).
"""
import re
import sys
import time

import numpy as np

from models.crossval import _pairwise, _segment_report
from models.data import IGNORE, fold_of, load_records, passages_of
from models.recipe import RECIPES, _completeness_rows, fit
from models.segment import sentences
from models.signals import (COMPLETENESS_FEATURES, Context, content_words, first_content_words,
                            reference_context_share)
from models.tables import build_with_cache, embedding_cache_path, features_of, stack

K = 5
# `--variants=words4,words8`: which references to score with ("wordsK": the gold answer's first
# words up to its K-th content word); `full` (the heads are fitted on it) and `other` (the guard's
# figures need it) are always built
ASKED = [v for a in sys.argv[1:] if a.startswith("--variants=") for v in a[11:].split(",")]
VARIANTS = list(dict.fromkeys(["full", *(ASKED or ["first", "terse"]), "other",
                               *([] if ASKED else [f"words{k}" for k in (2, 4, 8, 12, 16, 24)])]))
FLOORS = [int(v) for a in sys.argv[1:] if a.startswith("--floors=") for v in a[9:].split(",")] or [
    RECIPES["signals-lr-reference"].relevance_reference_min_words]
# `--shares=0.25,0.3`: the served guard's other thresholds to compare (a reference sharing less of its
# content words with the question and passages is taken for another question's: Recipe.reference_min_context_share)
SHARES = [float(v) for a in sys.argv[1:] if a.startswith("--shares=") for v in a[9:].split(",")]
PLOT = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--plot=")), "")
# `--mixed first,terse`: fit the reference heads on the training folds' tables with those references
# too (each record's rows once per reference), not only with the full gold answer
MIXED = next((a.split("=", 1)[1].split(",") for a in sys.argv[1:] if a.startswith("--mixed=")), [])
DATE = re.compile(r"\b(?:January|February|March|April|May|June|July|August|September|October|November|"
                  r"December)(?: \d{1,2})?,? \d{4}\b|\b\d{1,2} (?:January|February|March|April|May|June|July|"
                  r"August|September|October|November|December) \d{4}\b|\b\d[\d,.]*(?: (?:million|billion|"
                  r"percent|years?|people|km|miles))?\b")
NAME = re.compile(r"\b[A-Z][\w'-]+(?: (?:of |the |de |von )?[A-Z][\w'-]+){0,3}")


def terse(question: str, gold: str) -> str:
    """A 1-5 word answer cut from `gold` (see the module docstring)."""
    qwords = content_words(question)
    numeric = re.match(r"(?i)\s*(when|what year|how (many|much|long|old|far))\b", question)
    for pattern in ((DATE, NAME) if numeric else (NAME, DATE)):
        for m in pattern.finditer(gold):
            span = m.group(0).strip(" ,.")
            if pattern is NAME and (m.start() == 0 or gold[:m.start()].rstrip().endswith(".")):
                # a capital that starts a sentence ("Following", "In the Dragon Ball") is no name
                ws = span.split()[1:]
                while ws and ws[0] in ("of", "the", "de", "von"):
                    ws = ws[1:]
                span = " ".join(ws)
            words = content_words(span)
            if words and not words <= qwords and len(span.split()) <= 5:
                return span
    rest = [w for w in re.findall(r"[\w'-]+", gold) if content_words(w) - qwords]
    return " ".join(rest[:3]) or gold.split(".")[0]


def first_sentence(gold: str) -> str:
    ss = sentences(gold)
    return ss[0].text if ss else gold


def variants(recs, names):
    golds = [r.get("gold") or "" for r in recs]
    shifted = golds[1:] + golds[:1]  # another question's gold (neighbours in file order differ)
    make = {"full": lambda r, g, s: g, "first": lambda r, g, s: first_sentence(g),
            "terse": lambda r, g, s: terse(r["question"], g), "other": lambda r, g, s: s}
    out = {}
    for name in names:
        cut = (lambda r, g, s, k=int(name[5:]): first_content_words(g, k)) if name.startswith("words") else make[name]
        out[name] = [{**r, "gold": cut(r, g, s)} for r, g, s in zip(recs, golds, shifted)]
    return out


def main() -> None:
    t0 = time.time()
    recs = load_records("data/qa_feedback/dev_feedback.json")
    cache = embedding_cache_path(None)
    vs = variants(recs, VARIANTS)
    for r in vs.get("terse", [])[:8]:
        print(f"  terse: {r['question'][:60]!r} -> {r['gold']!r}", file=sys.stderr)
    tables = {}
    for name, rs in vs.items():
        print(f"[{time.time() - t0:5.0f} s] tables with the {name} reference", file=sys.stderr)
        tables[name] = build_with_cache(rs, cache)
    ref_recipe, base_recipe = RECIPES["signals-lr-reference"], RECIPES["signals-lr"]
    floor = ref_recipe.relevance_reference_min_words
    guard = ref_recipe.reference_min_context_share
    folds = [fold_of(t.question, K) for t in tables["full"]]
    out: dict = {}

    def add(name, p, y, threshold, comp):
        rep = _segment_report(p, y, threshold)
        row = out.setdefault(name, {"auc": [], "accuracy": [], "error_f1": [], "flagged": [], "comp": []})
        for key, v in (("auc", rep["auc"]), ("accuracy", rep["accuracy"]), ("error_f1", rep["error_f1"]),
                       ("flagged", float((p > threshold).mean())), ("comp", comp)):
            row[key].append(v)

    for f in range(K):
        train = [t for t, k in zip(tables["full"], folds) if k != f]
        print(f"[{time.time() - t0:5.0f} s] fold {f}: fitting", file=sys.stderr)
        mixed = train + [t for name in MIXED for t, k in zip(tables[name], folds) if k != f]
        heads = {"ref": fit(mixed, ref_recipe), "base": fit(train, base_recipe)}
        for name in (*vs, "none"):
            test_ix = [i for i, k in enumerate(folds) if k == f]
            test = [tables["full" if name == "none" else name][i] for i in test_ix]
            h = heads["base" if name == "none" else "ref"]
            x, y, _ = stack(test, "relevance")
            p = h.relevance.p_error(x, features_of("relevance"))
            a, b, _, _ = _completeness_rows(test, h.relevance, h.factuality)
            comp = _pairwise(h.completeness.score(a, COMPLETENESS_FEATURES),
                             h.completeness.score(b, COMPLETENESS_FEATURES))
            add(name, p, y, h.relevance.threshold, comp)
            if name == "none":
                continue
            words = [len(content_words(vs[name][i]["gold"])) for i in test_ix]
            shares = [reference_context_share(Context.of(recs[i]["question"], passages_of(recs[i]), vs[name][i]["gold"]))
                      for i in test_ix]
            base = heads["base"].relevance
            p_base = base.p_error(x, features_of("relevance"))
            ba, bb, _, _ = _completeness_rows(test, base, heads["base"].factuality)
            base_a = heads["base"].completeness.score(ba, COMPLETENESS_FEATURES)
            base_b = heads["base"].completeness.score(bb, COMPLETENESS_FEATURES)
            ref_a, ref_b = h.completeness.score(a, COMPLETENESS_FEATURES), h.completeness.score(b, COMPLETENESS_FEATURES)
            n_pairs = [sum(p_ in t.seg_x and o in t.seg_x for p_, o in t.pairs) for t in test]
            for fl, sh in [(fl, guard) for fl in FLOORS] + [(floor, s) for s in SHARES]:
                # as served: a reference under the floor scores relevance by the reference-free
                # head; one unrelated to the question and passages scores every type by those heads
                off = [v is not None and v < sh for v in shares]
                short = np.concatenate([np.full(int((t.rel_y != IGNORE).sum()), n < fl or o)
                                        for n, o, t in zip(words, off, test)])
                routed = np.where(short, p_base, p)
                # each P against its own head's threshold
                shifted = routed - np.where(short, base.threshold, h.relevance.threshold) + 0.5
                pair_off = np.concatenate([np.full(k, o) for k, o in zip(n_pairs, off)]).astype(bool)
                comp_served = _pairwise(np.where(pair_off, base_a, ref_a), np.where(pair_off, base_b, ref_b))
                key = f"{name}, served" + ("" if fl == floor else f" (floor {fl})") + (
                    "" if sh == guard else f" (share {sh})")
                add(key, shifted, y, 0.5, comp_served)
                out[key]["auc"][-1] = _segment_report(routed, y, 0.5)["auc"]
                out[key].setdefault("short", []).append(float(short.mean()))
                out[key].setdefault("unrelated", []).append(float(np.mean(off)))
    print(f"\n5-fold CV by question, {time.time() - t0:.0f} s; heads fitted with the full gold answers; "
          f"'served': relevance by the reference-free head under {floor} content words\n")
    print("| reference at test time | relevance AUC | accuracy | error-F1 | share flagged | completeness pairwise "
          "| rows under the floor or unrelated | records taken as unrelated |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in out.items():
        cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for k, v in row.items() if k not in ("short", "unrelated")]
        cells.append(f"{np.mean(row['short']):.2f}" if "short" in row else "")
        cells.append(f"{np.mean(row['unrelated']):.2f}" if "unrelated" in row else "")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print_shares(recs, vs, sorted({guard, *SHARES}))
    if PLOT:
        plot(out, PLOT)


def print_shares(recs, vs, thresholds) -> None:
    """The guard's measure over all records: the share of each reference's content words found in
    the question or passages, for the records' own gold answers and for another question's."""
    print("\nShare of the reference's distinct content words in the question or passages (all 400 records; "
          "None: passages too short to judge by)\n")
    print("| reference | records judged | 1st pct | 5th pct | median | 95th pct | 99th pct | max | "
          + " | ".join(f"under {t}" for t in thresholds) + " |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(thresholds))
    for name in ("full", "other"):
        shares = [reference_context_share(Context.of(r["question"], passages_of(r), v["gold"]))
                  for r, v in zip(recs, vs[name])]
        judged = np.array([s for s in shares if s is not None])
        pct = np.percentile(judged, [1, 5, 50, 95, 99, 100])
        print(f"| {name} | {len(judged)} of {len(shares)} | " + " | ".join(f"{v:.2f}" for v in pct) + " | "
              + " | ".join(str(int((judged < t).sum())) for t in thresholds) + " |")


def plot(out: dict, path: str) -> None:
    """Relevance AUC against the reference's length (the `wordsK` variants)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(int(n[5:]) for n in out if n.startswith("words") and "," not in n)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    floor = RECIPES["signals-lr-reference"].relevance_reference_min_words
    for suffix, label, style in (("", "reference heads", "o-"), (", served", f"as served (floor {floor})", "s--")):
        m = [np.mean(out[f"words{k}{suffix}"]["auc"]) for k in ks]
        sd = [np.std(out[f"words{k}{suffix}"]["auc"]) for k in ks]
        ax.errorbar(ks, m, yerr=sd, fmt=style, capsize=3, label=label)
    for name, color in (("full", "tab:green"), ("none", "tab:red")):
        ax.axhline(np.mean(out[name]["auc"]), color=color, ls=":", label=f"{name} reference" if name == "full"
                   else "no reference")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("reference: the gold answer's first K content words")
    ax.set_ylabel("relevance ROC-AUC (5-fold CV)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
