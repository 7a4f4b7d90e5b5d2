"""Just enough PromQL to check the dashboard and the alert rules offline: the metric names an
expression reads, the functions it calls, and whether its brackets balance. Not a parser: the
expressions in deploy/ are written in the plain subset this understands (no strings outside
label matchers, no subqueries), and the checks fail loudly on anything else."""

from __future__ import annotations

import re

FUNCTIONS = {
    # aggregations
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group",
    # functions
    "rate", "irate", "increase", "delta", "idelta", "histogram_quantile", "abs", "clamp_min", "clamp_max",
    "clamp", "absent", "absent_over_time", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time",
    "label_values", "vector", "scalar", "time", "round", "ln", "log2", "log10", "sqrt", "exp",
}
MODIFIERS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"offset", "bool", "and", "or", "unless", "inf", "nan"}
_NAME = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def _balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def parse(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, function names) of `expr`; AssertionError for what this cannot read."""
    assert expr.strip(), "empty expression"
    assert _balanced(expr), f"unbalanced brackets in {expr!r}"
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)            # label values
    text = re.sub(r"\{[^{}]*\}", "", text)                    # label matchers
    text = re.sub(r"\[[^\[\]]*\]", "", text)                  # range selectors ([5m], [$__rate_interval])
    text = re.sub(rf"\b({'|'.join(MODIFIERS)})\s*\([^()]*\)", "", text)  # by (le, type) ...
    assert "$" not in text, f"a Grafana variable outside a label matcher or range in {expr!r}"
    metrics, functions = set(), set()
    for name, call in _NAME.findall(text):
        if call:
            functions.add(name)
        elif name not in KEYWORDS and name not in MODIFIERS:
            metrics.add(name)
    unknown = functions - FUNCTIONS
    assert not unknown, f"unknown PromQL functions {sorted(unknown)} in {expr!r}"
    return metrics, functions


def label_names(expr: str) -> set[str]:
    """Labels an aggregation keeps (`by (...)`), which alert annotations may refer to."""
    return {label.strip() for group in re.findall(r"\bby\s*\(([^()]*)\)", expr) for label in group.split(",")}


def exported_sample_names(registry) -> set[str]:
    """Every sample name the metrics of `registry` can export, by type (a labelled metric with
    no observations yet exports nothing, so the names come from the families, not a scrape)."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("", "_sum", "_count")}
    return {fam.name + s for fam in registry.collect() for s in suffixes[fam.type]}
