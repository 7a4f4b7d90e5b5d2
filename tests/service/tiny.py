"""Tiny randomly-initialised checkpoints for tests about mechanics (not quality).

Built in a temporary directory in well under a second, offline: a character-level WordPiece
vocabulary, a 2-layer BERT with 32 hidden units, and either the fgrm reward heads
(`tiny_fgrm_checkpoint`) or a Hugging Face sequence-classification head
(`tiny_sequence_classifier`, for prefix_delta types).
"""

from __future__ import annotations

import string
from pathlib import Path

_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CHARS = list(string.ascii_lowercase + string.digits + string.punctuation)


def _tokenizer(path: Path, marker: str | None):
    from transformers import BertTokenizer

    vocab = _SPECIAL + _CHARS + ["##" + c for c in _CHARS]
    path.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    if marker:
        tok.add_special_tokens({"additional_special_tokens": [marker]})
    return tok


def _bert_config(vocab_size: int, max_positions: int):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=max_positions, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)


def tiny_fgrm_checkpoint(path: Path, max_length: int = 256, seed: int = 0) -> Path:
    import torch
    from transformers import BertModel

    from models.checkpoint import save_network
    from models.network import RewardNetwork

    torch.manual_seed(seed)
    tok = _tokenizer(path, "[SEG]")
    encoder = BertModel(_bert_config(len(tok), max_length), add_pooling_layer=False)
    net = RewardNetwork(encoder, ["relevance", "factuality"], ["completeness"])
    with torch.no_grad():  # spread the random heads so both classes occur
        net.segment_head.weight.mul_(20.0)
    meta = {"segment_heads": ["relevance", "factuality"], "sequence_heads": ["completeness"],
            "marker_token": "[SEG]", "max_length": max_length, "use_passages": True,
            "norm": {"completeness": {"mean": 0.1, "std": 2.0}}, "version": "tiny-test"}
    save_network(net, tok, path, meta, fp16=False)
    return path


def tiny_sequence_classifier(path: Path, num_labels: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    tok = _tokenizer(path, None)
    cfg = _bert_config(len(tok), 512)
    cfg.num_labels = num_labels
    model = BertForSequenceClassification(cfg)
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def types_toml(path: Path, fgrm_ckpt: Path, seqcls_ckpt: Path | None = None) -> Path:
    """A feedback-types file like the shipped one, on tiny checkpoints."""
    text = f"""
[[feedback_type]]
name = "relevance"
kind = "segment_classifier"
granularity = "sub-sentence"
checkpoint = "{fgrm_ckpt}"
use_passages = true
reward = {{ ok = 0.3, error = -0.3 }}
weight = 1.0

[[feedback_type]]
name = "factuality"
kind = "segment_classifier"
granularity = "sentence"
checkpoint = "{fgrm_ckpt}"
use_passages = true
reward = {{ ok = 0.5, error = -0.5 }}
weight = 1.0

[[feedback_type]]
name = "completeness"
kind = "preference_scorer"
granularity = "response"
checkpoint = "{fgrm_ckpt}"
use_passages = true
scale = 0.3
weight = 1.0
"""
    if seqcls_ckpt is not None:
        text += f"""
[[feedback_type]]
name = "toxicity"
kind = "prefix_delta"
granularity = "sentence"
checkpoint = "{seqcls_ckpt}"
label = 1
scale = 2.0
weight = 0.5
"""
    path.write_text(text)
    return path
