"""`fgrm train` mechanics on a tiny random backbone (the fine-tuned recipe, and the signal recipe with
another encoder), and `fgrm eval` output on the shipped model."""
import json

import numpy as np
import pytest

from models.data import DATA_DIR, label_response, load_records, error_spans


@pytest.fixture(scope="module")
def records():
    return load_records(DATA_DIR / "dev_feedback.json")


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    """A 2-layer, 32-unit BERT with the real MiniLM tokenizer: a local HF checkpoint, not fgrm."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from models.embedding import default_backbone

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-backbone")
    tok = AutoTokenizer.from_pretrained(default_backbone())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def test_finetune_recipe_writes_a_loadable_checkpoint_whose_weights_moved(tmp_path, records, tiny_backbone):
    from safetensors.torch import load_file

    from models import checkpoint as ckpt
    from models import runtime
    from models.train import main as train_main

    data = tmp_path / "data.json"
    data.write_text(json.dumps(records[:12]))
    out = tmp_path / "ckpt"
    assert train_main(["--recipe", "finetune", "--backbone", str(tiny_backbone), "--data", str(data), "--out", str(out), "--epochs", "1",
                       "--max-length", "256", "--records-per-step", "3", "--split", "all", "--device", "cpu",
                       "--fp32", "--lr", "1e-3"]) == 0
    meta = ckpt.read_meta(out)
    assert meta["segment_heads"] == ["relevance", "factuality"] and meta["sequence_heads"] == ["completeness"]
    assert meta["norm"]["completeness"]["std"] > 0
    before = load_file(str(tiny_backbone / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    key = "encoder.layer.0.attention.self.query.weight"
    assert not np.allclose(before[key].numpy(), after[key].numpy())
    loaded = runtime.load(out, "torch")
    assert loaded.encoder.marker_id == loaded.encoder.tokenizer.convert_tokens_to_ids("[SEG]")
    assert (out / "train_log.jsonl").read_text().count("\n") == 1


def test_signal_recipe_on_another_encoder_names_it_pins_it_and_serves_with_it(tmp_path, records, tiny_backbone):
    """`fgrm train --backbone DIR`: the checkpoint names DIR by absolute path and pins its weights;
    the runtime embeds with it (32-d rows here, not MiniLM's 384) and refuses changed weights."""
    import shutil

    from models import checkpoint as ckpt
    from models import runtime
    from models.checkpoint import sha256_file
    from models.segment import sentences, subsentences
    from models.train import main as train_main

    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_backbone, encoder)
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records[:12]))
    out = tmp_path / "ckpt"
    assert train_main(["--data", str(data), "--out", str(out), "--cv", "0", "--backbone", str(encoder),
                       "--embedding-cache", str(tmp_path / "emb.npz")]) == 0
    meta = ckpt.read_meta(out)
    assert meta["encoder"] == str(encoder.resolve())
    assert meta["encoder_sha256"] == sha256_file(encoder / "model.safetensors")
    loaded = runtime.load(out, "torch")
    r = records[20]
    response = r["prediction 1"]
    plan = loaded.encoder.plan(r["question"], [p[0] + ": " + " ".join(p[1:]) for p in r["passages"]], response,
                               subsentences(response), sentences(response))
    ids, mask = np.array(plan.rows[:1]), np.ones((1, len(plan.rows[0])), dtype=np.int64)
    assert loaded.backend.forward(ids, mask)["embeddings"].shape == (1, 32)
    out_ = loaded.encoder.run(loaded.backend.forward, [plan])[0]
    assert len(out_.relevance) == len(subsentences(response)) and np.all((out_.relevance >= 0) & (out_.relevance <= 1))
    # trained without CV (--cv 0): no quality figures to report, rather than made-up ones
    assert all(loaded.encoder.quality(h) == {} for h in ("relevance", "factuality", "completeness"))
    # an encoder the signals cannot use is refused before any work, naming why
    with pytest.raises(SystemExit, match="has no model.safetensors"):
        train_main(["--data", str(data), "--out", str(out), "--backbone", str(tmp_path)])
    short = tmp_path / "short"
    shutil.copytree(encoder, short)
    (short / "config.json").write_text(json.dumps({**json.loads((encoder / "config.json").read_text()),
                                                   "max_position_embeddings": 128}))
    with pytest.raises(SystemExit, match="takes 128 positions; the signals embed up to 256 tokens per text"):
        train_main(["--data", str(data), "--out", str(out), "--backbone", str(short)])
    # other weights under the same name are refused, naming both hashes
    from safetensors.torch import load_file, save_file

    weights = load_file(str(encoder / "model.safetensors"))
    weights = {k: v + 1.0 for k, v in weights.items()}
    save_file(weights, str(encoder / "model.safetensors"))
    ckpt._verified.clear()
    with pytest.raises(ValueError, match="model.safetensors has sha256 .* the checkpoint was trained on"):
        ckpt.encoder_dir(out)


def test_eval_json_has_metrics_and_baselines_and_survives_an_empty_response(tmp_path, records, capsys,
                                                                             shipped_checkpoint):
    from models.evaluate import main as eval_main

    picked = [dict(r) for r in records[:3]]
    picked[2]["prediction 1"] = ""  # an empty response: zero segments, no division by zero
    data = tmp_path / "data.json"
    data.write_text(json.dumps(picked))
    assert eval_main(["--data", str(data), "--checkpoint", str(shipped_checkpoint), "--runtime", "torch",
                      "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    expected_n = sum(len(label_response(r, r["prediction 1"], error_spans(r)).relevance) for r in picked)
    assert res["relevance"]["n"] == expected_n > 0
    for key in ("accuracy", "error_f1", "majority_accuracy", "all_error_f1", "auc", "ece"):
        assert 0.0 <= res["relevance"][key] <= 1.0
    for name in ("factuality", "factuality_all"):
        assert {"accuracy", "error_f1", "n", "majority_accuracy", "all_error_f1"} <= set(res[name])
    comp = res["completeness"]
    assert comp["n_pairs"] > 0 and 0.0 <= comp["pairwise_accuracy"] <= 1.0
    assert 0.0 <= comp["prefer_earlier_accuracy"] <= 1.0
    assert res["runtime"]["name"] == "torch"


def test_eval_of_no_records_reports_nulls_not_errors(tmp_path, capsys, shipped_checkpoint):
    from models.evaluate import main as eval_main

    data = tmp_path / "empty.json"
    data.write_text("[]")
    assert eval_main(["--data", str(data), "--checkpoint", str(shipped_checkpoint), "--runtime", "torch",
                      "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["relevance"] == {"n": 0, "accuracy": None, "error_f1": None, "majority_accuracy": None,
                                "all_error_f1": None, "error_rate": None, "auc": None, "ece": None}
    assert res["completeness"]["n_pairs"] == 0 and res["completeness"]["pairwise_accuracy"] is None


def test_eval_embeds_each_distinct_row_once_whatever_its_padding():
    from models.evaluate import embed_once

    calls = []

    def forward(ids, mask):  # a row's "embedding" is its real tokens' sum and count, as pooling would see them
        calls.append(len(ids))
        return {"embeddings": np.stack([[float((r * m).sum()), float(m.sum())] for r, m in zip(ids, mask)])}

    once = embed_once(forward)
    first = once(np.array([[5, 6, 0], [7, 0, 0], [5, 6, 0]]), np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0]]))
    # the same rows padded wider, in another order, beside one new row
    second = once(np.array([[7, 0, 0, 0], [8, 9, 9, 0], [5, 6, 0, 0]]), np.array([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]]))
    assert calls == [2, 1]  # [5, 6] and [7] once, then only [8, 9, 9]
    np.testing.assert_array_equal(first["embeddings"], [[11, 2], [7, 1], [11, 2]])
    np.testing.assert_array_equal(second["embeddings"], [[7, 1], [26, 3], [11, 2]])


@pytest.mark.parametrize("command", ["eval", "export"])
def test_eval_and_export_name_a_checkpoint_they_cannot_load_without_a_traceback(tmp_path, command):
    import importlib

    main = importlib.import_module(f"models.{'evaluate' if command == 'eval' else 'export'}").main
    with pytest.raises(SystemExit, match=f"^fgrm {command}: {tmp_path} is not an fgrm checkpoint \\(no fgrm.json\\)$"):
        main(["--checkpoint", str(tmp_path)])
