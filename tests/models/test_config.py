"""models.config: the shipped feedback types load; every error names the offending key."""

from pathlib import Path

import pytest

from models.config import DEFAULT_TYPES_FILE, REPO_ROOT, load_feedback_types
from models.errors import ConfigError

BASE = """
[[feedback_type]]
name = "relevance"
kind = "segment_classifier"
granularity = "sub-sentence"
checkpoint = "artifacts/fgrm-qa-minilm"
"""


def _load(tmp_path: Path, extra: str = "", base: str = BASE):
    f = tmp_path / "types.toml"
    f.write_text(base + extra)
    return load_feedback_types(f)


def test_shipped_types_load_with_paper_defaults():
    types = {t.name: t for t in load_feedback_types(DEFAULT_TYPES_FILE)}
    assert set(types) == {"relevance", "factuality", "completeness"}
    assert (types["relevance"].granularity, types["relevance"].reward_ok, types["relevance"].reward_error) == \
        ("sub-sentence", 0.3, -0.3)
    assert (types["factuality"].granularity, types["factuality"].reward_ok) == ("sentence", 0.5)
    assert (types["completeness"].kind, types["completeness"].scale) == ("preference_scorer", 0.3)
    assert types["relevance"].checkpoint == REPO_ROOT / "artifacts" / "fgrm-qa-signals"


def test_defaults_and_reward_table(tmp_path):
    (t,) = _load(tmp_path, 'reward = { ok = 1, error = -2 }\nweight = 0.5\n')
    assert (t.reward_ok, t.reward_error, t.weight, t.head, t.use_passages) == (1.0, -2.0, 0.5, "relevance", False)
    assert isinstance(t.reward_ok, float)


def test_absolute_and_home_checkpoints_are_kept(tmp_path):
    (t,) = _load(tmp_path, base=BASE.replace('"artifacts/fgrm-qa-minilm"', f'"{tmp_path}"'))
    assert t.checkpoint == tmp_path
    (t,) = _load(tmp_path, base=BASE.replace('"artifacts/fgrm-qa-minilm"', '"~/ckpt"'))
    assert t.checkpoint == Path("~/ckpt").expanduser()


@pytest.mark.parametrize("extra, key", [
    ('scale = "big"\n', "'scale'"),
    ("weight = -1\n", "weight"),
    ("weight = true\n", "'weight'"),
    ('norm_mean = "x"\n', "'norm_mean'"),
    ('use_passages = "yes"\n', "'use_passages'"),
    ("label = 1.5\n", "'label'"),
    ("max_length = \"512\"\n", "'max_length'"),
    ('reward = { ok = "high", error = -0.3 }\n', "'reward.ok'"),
    ("reward = { good = 1 }\n", "'reward'"),
    ("colour = 'red'\n", "colour"),
])
def test_bad_values_name_the_key(tmp_path, extra, key):
    with pytest.raises(ConfigError, match="relevance") as err:
        _load(tmp_path, extra)
    assert key in str(err.value)


@pytest.mark.parametrize("old, new, key", [
    ('granularity = "sub-sentence"', 'granularity = "paragraph"', "granularity"),
    ('kind = "segment_classifier"', 'kind = "regressor"', "kind"),
    ('granularity = "sub-sentence"', 'granularity = "response"', "granularity"),  # a classifier needs segments
    ('checkpoint = "artifacts/fgrm-qa-minilm"', "", "'checkpoint'"),
])
def test_bad_required_fields_name_the_key(tmp_path, old, new, key):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, base=BASE.replace(old, new))
    assert key in str(err.value)


def test_preference_scorer_must_be_response_level(tmp_path):
    base = BASE.replace('"segment_classifier"', '"preference_scorer"')
    with pytest.raises(ConfigError, match="response"):
        _load(tmp_path, base=base)


def test_missing_name_duplicates_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="'name'"):
        _load(tmp_path, base=BASE.replace('name = "relevance"', ""))
    with pytest.raises(ConfigError, match="unique"):
        _load(tmp_path, BASE)
    with pytest.raises(ConfigError, match="no \\[\\[feedback_type\\]\\]"):
        _load(tmp_path, base="# nothing here\n")


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="types.toml.*TOML"):
        _load(tmp_path, "[[feedback_type\n")
