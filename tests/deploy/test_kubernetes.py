"""deploy/kubernetes: every manifest validates against the Kubernetes schemas offline
(kubernetes-validate, which ships them), the overlays render, and the manifests agree with the
service: ports and settings from `service.config.Settings`, probe paths answered by the real
service, labels and selectors that match each other.

ServiceMonitor and PrometheusRule are Prometheus Operator CRDs, whose schemas
kubernetes-validate does not ship: their structure is checked by hand below."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tomllib
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

from service.config import NOT_OURS, Settings
from service.profiles import Profiles
from tests.deploy.manifests import containers, load_docs, one, render

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
BASE = KUBE / "base"
OVERLAYS = {"cpu": KUBE / "overlays" / "cpu", "gpu": KUBE / "overlays" / "gpu"}
CRDS = {"ServiceMonitor", "PrometheusRule"}
LABELS = {"app.kubernetes.io/name": "fgrm", "app.kubernetes.io/component": "reward-server"}
K8S_VERSION = "1.32.0"  # preStop `sleep` is stable from 1.32 on


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")


def rendered() -> dict[str, list[dict]]:
    return {name: render(folder) for name, folder in OVERLAYS.items()}


def validate(obj: dict, where: str) -> None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {obj['kind']}/{obj['metadata'].get('name')}: {exc.message} at "
                    f"{'.'.join(str(p) for p in exc.path)}")


def test_every_base_manifest_and_every_rendered_overlay_validates_offline():
    for path in manifest_files():
        if path.parent.name in ("cpu", "gpu") and path.name.startswith("deployment-"):
            continue  # a patch, not an object: validated as part of its rendered overlay below
        for obj in load_docs(path):
            if obj["kind"] not in CRDS:
                validate(obj, str(path.relative_to(REPO)))
    for name, objects in rendered().items():
        kinds = sorted(o["kind"] for o in objects)
        assert kinds == sorted(["Namespace", "Deployment", "Service", "Service", "PodDisruptionBudget", "ConfigMap",
                                "Secret", "ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler"]), name
        for obj in objects:
            if obj["kind"] not in CRDS:
                validate(obj, f"overlay {name}")


def test_the_validator_really_validates():
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: the rendering is not cross-checked")
def test_the_rendering_matches_kubectl_kustomize():
    def key(o):
        return o["kind"], o["metadata"]["name"]

    for name, folder in OVERLAYS.items():
        out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        theirs = sorted((d for d in yaml.safe_load_all(out.stdout) if d), key=key)
        assert sorted(render(folder), key=key) == theirs, name


def test_ports_probes_and_settings_agree_with_the_service():
    defaults = Settings()
    for name, objects in rendered().items():
        deploy = one(objects, "Deployment", "fgrm")
        (c,) = containers(deploy)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": defaults.http_port, "grpc": defaults.grpc_port}, name
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["BENTOML_PORT"] == env["FGRM_HTTP_PORT"] == str(defaults.http_port)
        assert env["FGRM_GRPC_PORT"] == str(defaults.grpc_port)
        assert env["FGRM_HTTP_HOST"] == env["FGRM_GRPC_HOST"] == "0.0.0.0"  # the defaults bind loopback only
        fields = {f.name for f in dataclasses.fields(Settings)}
        ours = {k for k in env if k.startswith("FGRM_") and not k.startswith(NOT_OURS)}
        assert {k[5:].lower() for k in ours} <= fields, f"{name}: unknown settings {ours}"
        # the values parse into valid settings (the *_FILE secrets exist only in the pod)
        settings = Settings.from_env({k: v for k, v in env.items() if not k.endswith("_FILE")})
        assert settings.read_only and settings.workers == 1 and not settings.extra
        # every path a setting names is a mounted file
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        for var in ("FGRM_FEEDBACK_TYPES", "FGRM_PROFILES", "FGRM_API_KEY_FILE"):
            assert str(Path(env[var]).parent) in mounts, f"{var} is not on a mounted volume"
        for var in ("FGRM_CACHE_DIR", "BENTOML_HOME"):
            assert env[var] in mounts, f"{var} must be a writable volume: the root filesystem is read-only"
        # probes on the named port, on the paths the real service answers (test below)
        assert c["startupProbe"]["httpGet"] == c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        # the pod keeps serving through the preStop sleep, then drains: queued work is bounded
        # by the admission bound in time, the gRPC server's grace is 2 s
        spec = deploy["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= (c["lifecycle"]["preStop"]["sleep"]["seconds"]
                                                         + 2 * defaults.max_wait_s + 2.0)
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["image"].startswith("registry.example.com/fgrm:"), "the placeholder the README explains"


def test_the_probe_paths_are_answered_by_the_real_service(fgrm_service):
    for path in ("/readyz", "/livez", "/metrics"):
        assert httpx.get(fgrm_service.base_url + path, timeout=10).status_code == 200, path


def test_non_root_read_only_security_context():
    deploy = one(load_docs(BASE / "deployment.yaml"), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    (c,) = containers(deploy)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_labels_selectors_and_port_names_match():
    for name, objects in rendered().items():
        deploy = one(objects, "Deployment", "fgrm")
        pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert deploy["spec"]["selector"]["matchLabels"] == LABELS and LABELS.items() <= pod_labels.items()
        port_names = {p["name"] for c in containers(deploy) for p in c["ports"]}
        http, grpc = one(objects, "Service", "fgrm-http"), one(objects, "Service", "fgrm-grpc")
        assert http["spec"]["type"] == "ClusterIP" and grpc["spec"]["clusterIP"] == "None"  # headless: per-pod DNS
        for svc in (http, grpc):
            assert svc["spec"]["selector"] == LABELS
            assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
        assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == LABELS
        hpa = one(objects, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fgrm"}
        assert hpa["spec"]["minReplicas"] <= deploy["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
        volumes = {v["name"] for v in deploy["spec"]["template"]["spec"]["volumes"]}
        assert {m["name"] for c in containers(deploy) for m in c["volumeMounts"]} <= volumes
        config = deploy["spec"]["template"]["spec"]["volumes"]
        assert {"configMap": {"name": "fgrm-config"}} in [{k: v for k, v in vol.items() if k != "name"} for vol in config]
        one(objects, "ConfigMap", "fgrm-config")
        one(objects, "Secret", "fgrm-secrets")
        assert all(o["metadata"].get("namespace") == "fgrm" for o in objects if o["kind"] != "Namespace")


def test_the_overlays_scale_cpu_on_cpu_and_gpu_on_the_queue():
    from tests.deploy.test_observability import exported

    cpu, gpu = rendered()["cpu"], rendered()["gpu"]
    (metric,) = one(cpu, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    (metric,) = one(gpu, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "fgrm_queue_items"
    assert "fgrm_queue_items" in exported()
    (c,) = containers(one(gpu, "Deployment"))
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1" and c["image"].endswith("-gpu")
    assert "fgrm_queue_items" in (OVERLAYS["gpu"] / "README.md").read_text()


def test_the_configmap_holds_the_shipped_feedback_types_and_valid_profiles():
    cm = one(load_docs(BASE / "configmap.yaml"), "ConfigMap")
    assert cm["data"]["feedback_types.toml"] == (REPO / "models" / "feedback_types.toml").read_text()
    types = tomllib.loads(cm["data"]["feedback_types.toml"])["feedback_type"]
    profiles = Profiles({t["name"]: float(t["weight"]) for t in types},
                        tomllib.loads(cm["data"]["profiles.toml"])["profiles"])  # names and weights checked
    assert len(profiles.all()) > 1


def test_the_secret_ships_placeholders_only():
    secret = one(load_docs(BASE / "secret.yaml"), "Secret")
    assert set(secret["stringData"]) == {"api-key", "admin-token"}
    assert all(v.startswith("REPLACE-ME") for v in secret["stringData"].values())


def test_the_crds_by_hand():
    """ServiceMonitor (monitoring.coreos.com/v1): selects the HTTP Service and scrapes /metrics
    on its named port. PrometheusRule: the groups of deploy/observability/alerts.yaml."""
    objects = render(BASE)
    sm = one(objects, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and set(sm["spec"]) == {"selector", "endpoints"}
    assert sm["spec"]["selector"]["matchLabels"] == LABELS
    (endpoint,) = sm["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"} and endpoint["path"] == "/metrics"
    assert endpoint["interval"].endswith("s") and int(endpoint["interval"][:-1]) > 0
    selected = [s for s in objects if s["kind"] == "Service" and LABELS.items() <= s["metadata"]["labels"].items()]
    assert any(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected)
    rule = one(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and set(rule["spec"]) == {"groups"}
    alerts = yaml.safe_load((REPO / "deploy" / "observability" / "alerts.yaml").read_text())
    assert rule["spec"] == alerts
