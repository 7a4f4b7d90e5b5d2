"""A clone with nothing beside it: copy the tracked files into an empty folder and run the data,
train and eval tests there, so that a path outside the repository (the shared data folder beside
the checkout) cannot creep back."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = "shared"  # the name of the data folder the project's own checkouts have beside them
TESTS = ["tests/models/test_data.py", "tests/models/test_train_eval.py", "tests/models/test_signals.py"]


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing to tell tracked files from build outputs")
    return [p for p in out.stdout.decode().split("\0") if p]


def test_data_train_and_eval_tests_pass_in_a_bare_copy(tmp_path):
    clone = tmp_path / "empty" / "fgrm"  # nothing beside it: no shared data folder
    for rel in _tracked_files():
        src = REPO / rel
        if src.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel, follow_symlinks=False)
    assert not any((where / SHARED).exists() for where in (clone.parent, clone.parent.parent))
    env = {**os.environ, "PYTHONPATH": str(clone), "FGRM_CACHE_DIR": str(tmp_path / "cache")}
    where = subprocess.run([sys.executable, "-c", "import models.data as d; print(d.DATA_DIR)"], cwd=clone, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(clone), "the copy imported code from outside itself"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=clone,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], run.stdout[-1000:]
