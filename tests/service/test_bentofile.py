"""`bentoml build` works offline with BENTOML_HOME outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from service.inspector import ASSETS

REPO = Path(__file__).resolve().parents[2]


def test_bentoml_build_packages_service_models_and_artifacts(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PIP_NO_INDEX": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("FGRM_")}
    proc = subprocess.run([sys.executable, "-m", "bentoml", "build", "--output", "tag"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    bentos = list((tmp_path / "bentoml" / "bentos" / "fgrm").glob("*/bento.yaml"))
    assert len(bentos) == 1
    root = bentos[0].parent
    meta = yaml.safe_load(bentos[0].read_text())
    assert meta["service"] == "service.bento_service:RewardService"
    src = root / "src"
    assert (src / "service" / "fgrm.proto").is_file() and not (src / "service" / "_proto").exists()
    assert (src / "models" / "feedback_types.toml").is_file()
    assert all((src / "service" / "static" / "inspect" / name).is_file() for name in ASSETS)
    shipped = REPO / "artifacts"
    for f in shipped.rglob("*"):
        if f.is_file() and f.name != "train_log.jsonl":
            assert (src / f.relative_to(REPO)).is_file(), f
    reqs = (root / "env" / "python" / "requirements.txt").read_text()
    assert "bentoml==" in reqs and "torch==" in reqs
    assert not REPO.joinpath("bentoml").exists()  # nothing written into the repository
