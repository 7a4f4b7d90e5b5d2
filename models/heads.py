"""Small calibrated heads over the signals of models.signals, stored as plain numbers.

- `LogisticHead` (relevance, factuality): standardised features -> logistic regression ->
  P(error). Logistic regression fitted by maximum likelihood is calibrated by construction on
  its training distribution; the cross-validation reports its ECE on unseen questions. The
  error decision is `p > threshold`, the threshold chosen on cross-validated predictions of
  the training records (never 0.5 by default) and stored beside the weights.
- `PreferenceHead` (completeness): a Bradley-Terry model, P(a preferred over b) = sigmoid(w .
  (f(a) - f(b))), fitted as a logistic regression without intercept on the differences of
  every non-tie human preference pair (both orders). Its score w . f(r) is normalised with the
  mean and std of the training responses' scores, as the reward is ((score - mean)/std) x scale.

Inference is numpy only (the service never imports scikit-learn), deterministic and per item.
Fitting uses scikit-learn, whose LogisticRegression (lbfgs, L2) is what we would otherwise
write by hand.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


@dataclass
class LogisticHead:
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float = 0.5
    # Platt recalibration of the logit, fitted on cross-fitted predictions (identity = [1, 0])
    calibration: tuple[float, float] = (1.0, 0.0)

    def columns(self, all_features: tuple[str, ...]) -> list[int]:
        missing = [f for f in self.features if f not in all_features]
        if missing:
            raise ValueError(f"head needs signals {missing} that this version does not compute")
        return [all_features.index(f) for f in self.features]

    def logit(self, x: np.ndarray, all_features: tuple[str, ...]) -> np.ndarray:
        """The regression's logit per row of `x`, before the Platt recalibration."""
        z = (x[:, self.columns(all_features)] - np.asarray(self.mean)) / np.asarray(self.scale)
        return z @ np.asarray(self.coef) + self.intercept

    def p_error(self, x: np.ndarray, all_features: tuple[str, ...]) -> np.ndarray:
        """P(error) per row of `x` (columns in `all_features` order)."""
        if len(x) == 0:
            return np.zeros(0)
        a, b = self.calibration
        return sigmoid(a * self.logit(x, all_features) + b)

    def to_json(self) -> dict:
        return {"type": "logistic", **asdict(self)}


@dataclass
class PreferenceHead:
    features: list[str]
    scale: list[float]
    coef: list[float]
    score_mean: float = 0.0
    score_std: float = 1.0
    # the mean score of a blank answer to the training questions (models.recipe.fit): where
    # "saying nothing" sits on this head's scale (None in checkpoints fitted before it existed)
    blank_score: float | None = None

    def score(self, x: np.ndarray, all_features: tuple[str, ...]) -> np.ndarray:
        """Bradley-Terry score per row of `x` (one row per response)."""
        cols = [all_features.index(f) for f in self.features]
        return (np.atleast_2d(x)[:, cols] / np.asarray(self.scale)) @ np.asarray(self.coef)

    def to_json(self) -> dict:
        return {"type": "bradley_terry", **asdict(self)}


def head_from_json(d: dict):
    d = dict(d)
    kind = d.pop("type")
    if kind == "logistic":
        d["calibration"] = tuple(d.get("calibration", (1.0, 0.0)))
        return LogisticHead(**d)
    if kind == "bradley_terry":
        return PreferenceHead(**d)
    raise ValueError(f"unknown head type {kind!r}")


# ---------------------------------------------------------------------------- fitting

def _scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    scale = x.std(0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def fit_logistic(x: np.ndarray, y: np.ndarray, features: list[str], all_features: tuple[str, ...],
                 c: float = 1.0, threshold: float = 0.5, weight: np.ndarray | None = None) -> LogisticHead:
    from sklearn.linear_model import LogisticRegression

    cols = [all_features.index(f) for f in features]
    xs = x[:, cols]
    mean, scale = _scale(xs) if len(xs) else (np.zeros(len(cols)), np.ones(len(cols)))
    if len(set(np.asarray(y).tolist())) < 2:  # one class only (tiny inputs): a constant head at the base rate
        rate = float(np.clip(np.mean(y) if len(y) else 0.5, 1e-3, 1 - 1e-3))
        return LogisticHead(list(features), mean.tolist(), scale.tolist(), [0.0] * len(cols),
                            float(np.log(rate / (1 - rate))), threshold)
    model = LogisticRegression(C=c, max_iter=5000).fit((xs - mean) / scale, y, sample_weight=weight)
    return LogisticHead(list(features), mean.tolist(), scale.tolist(), model.coef_[0].tolist(),
                        float(model.intercept_[0]), threshold)


def add_flag(head: LogisticHead, x: np.ndarray, y: np.ndarray, name: str, all_features: tuple[str, ...],
             c: float = 1.0, weight: np.ndarray | None = None) -> LogisticHead:
    """`head` plus one 0/1 feature `name` whose coefficient alone is fitted, every other weight
    frozen: L2-penalised logistic loss (scikit-learn's objective, C * sum(w * loss) + coef**2 / 2)
    over the rows where the flag is 1, with the head's logit as the offset. Rows without the flag
    score exactly as before, which is the point: the flag covers inputs the labelled data hardly
    has (models.recipe), and fitting it jointly would let those rows bend the other weights."""
    from scipy.optimize import minimize_scalar

    if name in head.features:
        raise ValueError(f"head already has feature {name!r}")
    on = x[:, all_features.index(name)] > 0.5
    w = (np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64))[on]
    y_on = np.asarray(y, dtype=np.float64)[on]
    offset = head.logit(x[on], all_features)

    def objective(beta: float) -> float:
        z = offset + beta
        loss = np.logaddexp(0.0, z) - y_on * z  # -log P(y | z), stable
        return float(c * (w * loss).sum() + beta * beta / 2)

    beta = float(minimize_scalar(objective, bounds=(-50.0, 50.0), method="bounded").x) if on.any() else 0.0
    return LogisticHead([*head.features, name], [*head.mean, 0.0], [*head.scale, 1.0], [*head.coef, beta],
                        head.intercept, head.threshold, head.calibration)


def fit_preference(a: np.ndarray, b: np.ndarray, features: list[str], all_features: tuple[str, ...],
                   c: float = 0.1, responses: np.ndarray | None = None,
                   weight: np.ndarray | None = None) -> PreferenceHead:
    """Bradley-Terry on pairs (a[i] preferred over b[i]); `responses` (every training response's
    features) sets the score normalisation."""
    from sklearn.linear_model import LogisticRegression

    cols = [all_features.index(f) for f in features]
    if not len(a):  # no preference pairs: a head that scores every response 0
        return PreferenceHead(list(features), [1.0] * len(cols), [0.0] * len(cols))
    diff = np.concatenate([a[:, cols] - b[:, cols], b[:, cols] - a[:, cols]])
    y = np.r_[np.ones(len(a)), np.zeros(len(a))]
    scale = diff.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    w = None if weight is None else np.r_[weight, weight]
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=5000).fit(diff / scale, y, sample_weight=w)
    head = PreferenceHead(list(features), scale.tolist(), model.coef_[0].tolist())
    pool = responses if responses is not None else np.concatenate([a, b])
    s = head.score(pool, all_features)
    head.score_mean, head.score_std = float(s.mean()), float(s.std() or 1.0)
    return head


def fit_platt(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) with sigmoid(a * logit(p) + b) calibrated on held-out (p, y)."""
    from sklearn.linear_model import LogisticRegression

    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    logit = np.log(p / (1 - p)).reshape(-1, 1)
    model = LogisticRegression(C=1e6, max_iter=5000).fit(logit, y)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def calibrate(p: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return sigmoid(ab[0] * np.log(p / (1 - p)) + ab[1])


def choose_threshold(p: np.ndarray, y: np.ndarray, objective: str = "acc+f1") -> float:
    """The decision threshold maximising `objective` on (p, y): "accuracy", "f1", or "acc+f1"
    (their mean: an error decision must be right often *and* find the errors)."""
    cands = np.unique(np.round(p, 4))
    if len(cands) > 400:
        cands = np.quantile(p, np.linspace(0.005, 0.995, 400))
    best, best_t = -1.0, 0.5
    for t in cands:
        m = binary_metrics(p > t, y)
        value = {"accuracy": m["accuracy"], "f1": m["error_f1"],
                 "acc+f1": (m["accuracy"] + m["error_f1"]) / 2}[objective]
        if value > best:
            best, best_t = value, float(t)
    return best_t


# ---------------------------------------------------------------------------- metrics

def binary_metrics(pred: np.ndarray, y: np.ndarray) -> dict:
    pred, y = np.asarray(pred).astype(int), np.asarray(y).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    n = len(y)
    return {"accuracy": float((pred == y).mean()) if n else float("nan"),
            "error_f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0}


def roc_auc(p: np.ndarray, y: np.ndarray) -> float | None:
    """Mann-Whitney ROC-AUC (ties count half); None when one class is absent."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return None
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[pos, neg])
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float | None:
    """Expected calibration error of P(error): equal-width bins, weighted |mean p - error rate|."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not len(p):
        return None
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(p) * abs(p[m].mean() - y[m].mean())
    return float(total)
