"""The best round per setting, ratios against the targets, the markdown table and the plot of one benchmark run (benchmarks/run.py)."""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = {"vs_raw": 0.90, "vs_naive": 5.0, "p50_overhead_ms": 3.0}
TRANSPORT_NAMES = {"http": "HTTP", "grpc": "gRPC"}


def _rows(results: dict, server: str, transport: str) -> dict[int, dict]:
    return {r["concurrency"]: r for r in results["servers"] if r["server"] == server and r["transport"] == transport}


def _display_order(results: dict) -> list[dict]:
    order = {("service", "http"): 0, ("service", "grpc"): 1, ("naive", "http"): 2, ("seed", "http"): 3}
    return sorted(results["servers"], key=lambda r: (order[(r["server"], r["transport"])], r["concurrency"]))


def _parity(reference: list[float], totals: list) -> float | None:
    """Largest |mixed total - in-process engine's| over the items a setting scored."""
    diffs = [abs(a - b) for a, b in zip(reference, totals) if b is not None]
    return max(diffs) if diffs else None


def best_rounds(rows: list[dict]) -> list[dict]:
    """Per setting, the round least disturbed by other work on the machine (highest items/s)."""
    best: dict = {}
    for row in rows:
        key = (row["server"], row["transport"], row["concurrency"])
        if key not in best or row["items_per_s"] > best[key]["items_per_s"]:
            best[key] = row
    return list(best.values())


def summarize(results: dict) -> dict:
    """Ratios of one run, all computed from that run's own measurements. Also moves each
    setting's per-item mixed totals out of the results into a parity figure (the largest
    difference from the in-process engine's rewards: every setting must do the same work)."""
    # best of every raw measurement (the initial batch sizes and the batch-1 re-measurements)
    raws = results["raw_forward"] + results.get("raw_rounds", [])
    raw = max(raws, key=lambda r: r["items_per_s"])
    singles = [r for r in raws if r["batch_size"] == 1]
    raw_single = min(singles, key=lambda r: r["batch_p50_ms"]) if singles else None
    engine_single = min([results["engine"]["single"], *results.get("engine_rounds", [])], key=lambda r: r["p50_ms"])
    reference = results["engine"].pop("mixed_totals")
    # the seed-style server runs other models: its rewards are checked against its own in-process run
    seed_reference = results.get("seed_style", {}).pop("mixed_totals", None)
    top = max(results["concurrencies"])
    naive = _rows(results, "naive", "http")
    summary = {"targets": TARGETS, "raw_items_per_s": raw["items_per_s"], "raw_batch_size": raw["batch_size"],
               "raw_batch1_p50_ms": raw_single["batch_p50_ms"] if raw_single else None,
               "engine_single_p50_ms": engine_single["p50_ms"], "concurrency": top,
               "naive_items_per_s": naive[top]["items_per_s"], "transports": {},
               "parity_max_abs_diff": {}}
    for row in results.get("server_rounds", results["servers"]):
        key = f"{row['server']} {row['transport']} c={row['concurrency']}"
        diff = _parity(seed_reference if row["server"] == "seed" else reference, row.pop("mixed_totals", []))
        if diff is not None:
            summary["parity_max_abs_diff"][key] = max(diff, summary["parity_max_abs_diff"].get(key, 0.0))
    for transport in TRANSPORT_NAMES:
        svc = _rows(results, "service", transport)
        if not svc:
            continue
        t = {"items_per_s": svc[top]["items_per_s"],
             "vs_raw": round(svc[top]["items_per_s"] / raw["items_per_s"], 3),
             "vs_naive": round(svc[top]["items_per_s"] / naive[top]["items_per_s"], 3)}
        if 1 in svc:
            t["p50_c1_ms"] = svc[1]["p50_ms"]
            if raw_single is not None:
                t["p50_overhead_ms"] = round(svc[1]["p50_ms"] - raw_single["batch_p50_ms"], 2)
            t["p50_overhead_vs_engine_ms"] = round(svc[1]["p50_ms"] - engine_single["p50_ms"], 2)
        t["met"] = {"vs_raw": t["vs_raw"] >= TARGETS["vs_raw"], "vs_naive": t["vs_naive"] >= TARGETS["vs_naive"]}
        if "p50_overhead_ms" in t:
            t["met"]["p50_overhead_ms"] = t["p50_overhead_ms"] <= TARGETS["p50_overhead_ms"]
        summary["transports"][transport] = t
    seed = _rows(results, "seed", "http")
    if seed:
        # per concurrency: service items/s ÷ seed-style items/s, both measured in this run
        summary["ratio_service_vs_seed_style"] = {
            f"c={c}": {tr: round(_rows(results, "service", tr)[c]["items_per_s"] / row["items_per_s"], 3)
                       for tr in TRANSPORT_NAMES if c in _rows(results, "service", tr)}
            for c, row in sorted(seed.items())}
        summary["seed_style_items_per_s"] = {f"c={c}": row["items_per_s"] for c, row in sorted(seed.items())}
    return summary


def _f(x, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown_table(results: dict) -> str:
    """The settings table and the ratios table, as markdown."""
    return "\n".join([*_settings_table(results), "", *_ratios_table(results["summary"])])


def _settings_table(results: dict) -> list[str]:
    """One row per measured setting: raw forward, in-process engine, the servers."""
    lines = ["| setting | concurrency / batch | items/s | p50 ms | p99 ms |", "|---|---|---:|---:|---:|"]

    def row(label: str, setting, ips, p50=None, p99=None) -> None:
        lines.append(f"| {label} | {setting} | {_f(ips, 2)} | {_f(p50)} | {_f(p99)} |")

    raw = "(a) raw `backend.forward`, pre-encoded, length-sorted (latency per batch)"
    for r in results["raw_forward"]:
        row(raw, f"batch {r['batch_size']}", r["items_per_s"], r["batch_p50_ms"], r["batch_p99_ms"])
    e = results["engine"]
    row(f"(a) engine in-process, all items at once: segment + encode ({_f(e['batched']['prepare_ms_per_item'])} "
        "ms/item) + token-budget batches + rewards", "all", e["batched"]["items_per_s"])
    singles = [e["single"], *results.get("engine_rounds", [])]
    single = max(singles, key=lambda r: r["items_per_s"])
    row(f"(a) engine in-process, one item at a time (`score_sync`), best of {len(singles)}", 1,
        single["items_per_s"], single["p50_ms"], single["p99_ms"])
    seed = results.get("seed_style")
    if seed:
        row(f"(d) seed-style models in-process, one item at a time ({seed['forwards_per_item']} forward passes "
            "per item, batch 1)", 1, seed["items_per_s"], seed["p50_ms"], seed["p99_ms"])
    rounds = results.get("raw_rounds", [])
    if rounds:
        spread = ", ".join(_f(r["items_per_s"], 2) for r in rounds)
        row(f"(a) raw `backend.forward` re-measured before each concurrency of each round ({spread} items/s)",
            "batch 1, best", max(r["items_per_s"] for r in rounds), min(r["batch_p50_ms"] for r in rounds),
            min(r["batch_p99_ms"] for r in rounds))
    for r in _display_order(results):
        what = {"service": "(b) service", "naive": "(c) naive server",
                "seed": "(d) seed-style server (3 models, 1 forward each per item)"}[r["server"]]
        err = f" ({sum(r['errors'].values())} errors)" if r["errors"] else ""
        passes = [x["items_per_s"] for x in results.get("server_rounds", []) if
                  (x["server"], x["transport"], x["concurrency"]) == (r["server"], r["transport"], r["concurrency"])]
        if len(passes) > 1:
            err += f", best of {', '.join(_f(v, 2) for v in passes)} items/s"
        row(f"{what} {TRANSPORT_NAMES[r['transport']]}{err}", r["concurrency"], r["items_per_s"],
            r["p50_ms"], r["p99_ms"])
    return lines


def _ratios_table(s: dict) -> list[str]:
    """The run's ratios against the targets, one column per transport (`s`: the run's summary)."""
    transports = list(s["transports"])
    head = " | ".join(TRANSPORT_NAMES[t] for t in transports)
    lines = [f"| ratio (this run) | {head} | target | met |", "|---|" + "---:|" * len(transports) + "---|---|"]

    def ratio_row(label: str, key: str, target: str, digits: int = 2):
        vals = [s["transports"][t].get(key) for t in transports]
        met = [s["transports"][t].get("met", {}).get(key) for t in transports]
        verdict = ", ".join(f"{TRANSPORT_NAMES[t]} {'yes' if m else 'NO'}"
                            for t, m in zip(transports, met) if m is not None) or "–"
        lines.append(f"| {label} | " + " | ".join(_f(v, digits) for v in vals) + f" | {target} | {verdict} |")

    c = s["concurrency"]
    ratio_row(f"service items/s at c={c} ÷ raw forward (best measured, batch {s['raw_batch_size']}, "
              f"{_f(s['raw_items_per_s'], 2)} items/s)",
              "vs_raw", f"≥ {TARGETS['vs_raw']}")
    ratio_row(f"service items/s at c={c} ÷ naive at c={c} ({_f(s['naive_items_per_s'], 2)} items/s)",
              "vs_naive", f"≥ {TARGETS['vs_naive']:g}")
    for c, ratios in s.get("ratio_service_vs_seed_style", {}).items():
        lines.append(f"| service items/s at {c} ÷ seed-style at {c} ({_f(s['seed_style_items_per_s'][c], 2)} items/s) | "
                     + " | ".join(_f(ratios.get(t), 2) for t in transports) + " | – | – |")
    ratio_row(f"p50 at c=1 − best raw forward p50 at batch 1 ({_f(s['raw_batch1_p50_ms'])} ms), in ms",
              "p50_overhead_ms", f"≤ {TARGETS['p50_overhead_ms']:g}", 1)
    ratio_row(f"p50 at c=1 − best engine one-at-a-time p50 ({_f(s['engine_single_p50_ms'])} ms), in ms: "
              "transport + queue only", "p50_overhead_vs_engine_ms", "–", 1)
    return lines


def plot(results: dict, path: Path) -> None:
    """items/s of every setting, and p50/p99 of the client settings, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = {("service", "http"): "#1f77b4", ("service", "grpc"): "#2ca02c", ("naive", "http"): "#d62728",
               ("seed", "http"): "#9467bd"}
    lat = _display_order(results)
    names = [f"{r['server']} {TRANSPORT_NAMES[r['transport']]} c={r['concurrency']}" for r in lat]
    e = results["engine"]
    raws = [(f"raw forward b={r['batch_size']}", r["items_per_s"]) for r in results["raw_forward"]]
    if results.get("raw_rounds"):
        raws.append(("raw forward b=1, best re-measure", max(r["items_per_s"] for r in results["raw_rounds"])))
    single = max([e["single"], *results.get("engine_rounds", [])], key=lambda r: r["items_per_s"])
    labels = [n for n, _ in raws] + ["engine in-proc, all", "engine in-proc, 1 by 1"] + names
    values = ([v for _, v in raws] + [e["batched"]["items_per_s"], single["items_per_s"]]
              + [r["items_per_s"] for r in lat])
    colors = ["#777777"] * len(raws) + ["#aaaaaa"] * 2 + [palette[(r["server"], r["transport"])] for r in lat]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5.5))
    y = range(len(labels))
    ax1.barh(y, values, color=colors)
    ax1.set_yticks(list(y), labels, fontsize=8)
    ax1.invert_yaxis()
    raw = results["summary"]["raw_items_per_s"]
    ax1.axvline(raw, color="black", lw=1, ls="--", label=f"raw limit {raw:.1f}")
    ax1.axvline(0.9 * raw, color="black", lw=1, ls=":", label="0.90 × raw (target)")
    ax1.set_xlabel("items/s (higher is better)")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    x = list(range(len(lat)))
    ax2.bar([i - 0.2 for i in x], [r["p50_ms"] for r in lat], 0.4, label="p50",
            color=[palette[(r["server"], r["transport"])] for r in lat])
    ax2.bar([i + 0.2 for i in x], [r["p99_ms"] for r in lat], 0.4, label="p99", color="#cccccc", edgecolor="#555555")
    ax2.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax2.set_yscale("log")
    ax2.set_ylabel("request latency, ms (log; p50 coloured, p99 grey)")
    fig.suptitle(f"fgrm on {results['machine']['cores']} shared CPU cores, runtime {results['runtime']}, "
                 f"{results['items']} QA-Feedback dev items per setting, best of "
                 f"{len({r.get('round', 1) for r in results.get('server_rounds', results['servers'])})} rounds ({results['date']})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_outputs(results: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / f"{results['name']}.json", out_dir / f"{results['name']}.png"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, png_path)
    return json_path, png_path
