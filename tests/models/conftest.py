"""Fixtures for model-layer tests: the MiniLM tokenizer, a tiny random checkpoint, the shipped signal
checkpoint, and the fine-tuned reward network (no longer the default; the ONNX parity subject)."""

from __future__ import annotations

import pytest

from models.config import REPO_ROOT

SHIPPED = REPO_ROOT / "artifacts" / "fgrm-qa-signals"
FINETUNED = REPO_ROOT / "artifacts" / "fgrm-qa-minilm"


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """all-MiniLM-L6-v2's WordPiece tokenizer with the [SEG] marker, as `fgrm train` builds it."""
    from transformers import AutoTokenizer

    from models.encoding import MARKER_TOKEN
    from models.embedding import default_backbone

    tok = AutoTokenizer.from_pretrained(default_backbone())
    tok.add_special_tokens({"additional_special_tokens": [MARKER_TOKEN]})
    return tok


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """A private cache directory for the whole session (the process's default runtime options):
    every export is made fresh by the tests."""
    from models.runtime.options import RuntimeOptions, set_defaults

    cache = tmp_path_factory.mktemp("fgrm-cache")
    previous = set_defaults(RuntimeOptions(cache_dir=cache))
    yield cache
    set_defaults(previous)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A 2-layer, 32-unit random checkpoint (character vocabulary): mechanics, not quality."""
    from tests.service.tiny import tiny_fgrm_checkpoint

    return tiny_fgrm_checkpoint(tmp_path_factory.mktemp("tiny") / "fgrm")


@pytest.fixture(scope="session")
def shipped_checkpoint():
    if not (SHIPPED / "fgrm.json").is_file():
        pytest.skip(f"no shipped checkpoint at {SHIPPED} (reproduce it with `fgrm train`)")
    return SHIPPED


@pytest.fixture(scope="session")
def finetuned_checkpoint():
    if not (FINETUNED / "fgrm.json").is_file():
        pytest.skip(f"no fine-tuned checkpoint at {FINETUNED}")
    return FINETUNED
