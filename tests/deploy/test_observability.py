"""deploy/observability: the Grafana dashboard and the Prometheus alert rules are well formed and
read only metrics the service exports. The exported names come from the service's own metric
definitions (service.metrics.EngineMetrics, by metric type) and are checked against the real
service's /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import prometheus_client
import yaml

from service.metrics import EngineMetrics
from tests.deploy.promql import exported_sample_names, label_names, parse

REPO = Path(__file__).resolve().parents[2]
OBS = REPO / "deploy" / "observability"
DURATION = re.compile(r"\d+[smhd]")
GRAFANA_VARIABLES = {"$__rate_interval", "$__interval", "$__range"}


def exported() -> set[str]:
    registry = prometheus_client.CollectorRegistry()
    EngineMetrics(registry)
    return exported_sample_names(registry)


def dashboard() -> dict:
    return json.loads((OBS / "grafana-dashboard.json").read_text())


def test_the_exported_names_are_what_the_real_service_serves(fgrm_service):
    httpx.post(fgrm_service.base_url + "/v1/score", json={"items": [{"response": "One. Two."}]}, timeout=60)
    text = httpx.get(fgrm_service.base_url + "/metrics", timeout=10).text
    served = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
              if line.startswith("fgrm_") and not line.startswith("#")}
    assert served and served <= exported(), served - exported()
    assert {"fgrm_requests_total", "fgrm_queue_items", "fgrm_reward_bucket"} <= served


def test_every_alert_is_well_formed_and_reads_only_exported_metrics():
    doc = yaml.safe_load((OBS / "alerts.yaml").read_text())
    names = set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]) and rule["alert"] not in names
            names.add(rule["alert"])
            assert DURATION.fullmatch(rule["for"])
            assert rule["labels"]["severity"] in {"page", "warn", "info"}
            metrics, _ = parse(rule["expr"])
            assert metrics and metrics <= exported(), (rule["alert"], metrics - exported())
            # an annotation may only name labels the expression keeps
            for text in rule["annotations"].values():
                used = set(re.findall(r"\$labels\.(\w+)", text))
                assert used <= label_names(rule["expr"]), (rule["alert"], used)
    assert {"FgrmErrorRate", "FgrmQueueSaturated", "FgrmLatencyP99", "FgrmRewardDrift"} <= names


def test_the_dashboard_is_well_formed_and_reads_only_exported_metrics():
    d = dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    variables = {f"${v['name']}" for v in d["templating"]["list"]} | GRAFANA_VARIABLES
    ids, shown = set(), set()
    for panel in d["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["type"] in {"row", "timeseries", "heatmap", "stat"} and panel["title"]
        g = panel["gridPos"]
        assert all(isinstance(g[k], int) for k in "xywh") and g["x"] + g["w"] <= 24
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs))
        for target in panel.get("targets", []):
            expr = target["expr"]
            assert set(re.findall(r"\$\w+", expr)) <= variables, expr
            metrics, _ = parse(expr)
            assert metrics and metrics <= exported(), (panel["title"], metrics - exported())
            shown |= metrics
        assert set(re.findall(r"\$\w+", panel["title"])) <= variables
    # what the issue asks to see: requests and errors by kind, queue depth and wait, batch size
    # and padding, forward time, per-type rewards and their drift
    families = {re.sub(r"_(total|bucket|sum|count)$", "", m) for m in shown}
    assert {"fgrm_requests", "fgrm_errors", "fgrm_queue_items", "fgrm_queue_wait_seconds", "fgrm_batch_size",
            "fgrm_batch_padding_fraction", "fgrm_forward_seconds", "fgrm_reward"} <= families
    assert any("drift" in p["title"].lower() for p in d["panels"])


def test_the_promql_reader_catches_what_it_should():
    import pytest

    assert parse('sum by (le) (rate(fgrm_x_bucket{type="a"}[5m])) > 1e-9')[0] == {"fgrm_x_bucket"}
    assert parse("rate(a[1d] offset 1h) / clamp_min(b, 1)")[0] == {"a", "b"}
    for bad in ("sum(rate(a[5m])", "nosuchfn(a)", ""):
        with pytest.raises(AssertionError):
            parse(bad)
