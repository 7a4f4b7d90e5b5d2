"""Read the Kubernetes manifests of deploy/kubernetes the way `kubectl kustomize` renders them,
for the subset of kustomize they use (resources, strategic-merge patches by kind and name,
images, namespace), so the tests need neither kubectl nor a cluster. Anything else in a
kustomization.yaml is refused here rather than silently ignored; where kubectl is installed,
tests/deploy/test_kubernetes.py compares this rendering with its own."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

KUSTOMIZE_KEYS = {"apiVersion", "kind", "namespace", "resources", "patches", "images"}
CLUSTER_SCOPED = {"Namespace"}


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def render(folder: Path) -> list[dict]:
    """The objects `kubectl kustomize folder` would print (order aside)."""
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(k) - KUSTOMIZE_KEYS
    assert not unknown, f"{folder}: kustomization uses {sorted(unknown)}, which manifests.render does not implement"
    objects: list[dict] = []
    for res in k.get("resources", []):
        path = (folder / res).resolve()
        objects += render(path) if path.is_dir() else copy.deepcopy(load_docs(path))
    for patch in k.get("patches", []):
        assert set(patch) == {"path"}, f"{folder}: only file patches are implemented"
        for p in load_docs(folder / patch["path"]):
            target = [o for o in objects if (o["kind"], o["metadata"]["name"]) == (p["kind"], p["metadata"]["name"])]
            assert len(target) == 1, f"{folder}: patch {patch['path']} matches {len(target)} objects"
            merge(target[0], p)
    for image in k.get("images", []):
        for o in objects:
            for c in containers(o):
                if c["image"].split(":")[0] == image["name"]:
                    c["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    if "namespace" in k:
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    return objects


def merge(into: dict, patch: dict) -> None:
    """Strategic merge as kustomize does it for what these patches touch: maps merge, lists of
    named maps (containers, env, volumes, ports) merge by name, new entries first; other lists
    are replaced."""
    for key, value in patch.items():
        old = into.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merge(old, value)
        elif isinstance(value, list) and isinstance(old, list) and value and all(
                isinstance(v, dict) and "name" in v for v in value + old):
            by_name = {v["name"]: v for v in old}
            for v in value:
                if v["name"] in by_name:
                    merge(by_name[v["name"]], v)
            # kustomize puts the entries a patch adds before the existing ones
            old[:0] = [copy.deepcopy(v) for v in value if v["name"] not in by_name]
        else:
            into[key] = copy.deepcopy(value)


def containers(obj: dict) -> list[dict]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]
