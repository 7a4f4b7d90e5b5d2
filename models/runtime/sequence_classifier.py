"""Runtime for `prefix_delta` feedback types: any Hugging Face sequence-classification checkpoint.

Same backend contract as the fgrm runtimes (name, provider, batch_invariant, forward on padded
numpy arrays), but its output is ``{"sequence_logits": float32 (B, n_classes)}``; the service's
PrefixDeltaScorer turns those into -Δ p_bad per segment. Torch only: these are third-party
checkpoints with no fgrm export step, so "onnx"/"onnx-int8" fall back to torch (reported).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import InputTooLong


class PrefixEncoder:
    """Tokenises one text (a response prefix) with the checkpoint's own special tokens."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        if len(ids) > self.max_length:
            raise InputTooLong("response", len(ids), self.max_length)
        return ids


class SequenceClassifierBackend:
    name = "torch"
    batch_invariant = True

    def __init__(self, checkpoint: str | Path, device: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification

        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint), dtype=torch.float32)
        self.model.to(self.device).eval()
        self.num_labels = int(self.model.config.num_labels)
        self.provider = str(self.device)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)).to(self.device)
            mask = torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64)).to(self.device)
            logits = self.model(input_ids=ids, attention_mask=mask).logits
        return {"sequence_logits": logits.float().cpu().numpy()}

    def health(self) -> bool:
        return True


def load(checkpoint: str | Path, runtime: str = "auto", max_length: int | None = None):
    """(PrefixEncoder, SequenceClassifierBackend) for a sequence-classification checkpoint."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    backend = SequenceClassifierBackend(checkpoint)
    positions = getattr(backend.model.config, "max_position_embeddings", None) or 512
    limit = min(x for x in (max_length, positions, getattr(tokenizer, "model_max_length", None)) if x)
    if tokenizer.pad_token_id is None:  # GPT-2 style classifiers: pad with EOS; attention mask hides it
        tokenizer.pad_token = tokenizer.eos_token
        backend.model.config.pad_token_id = tokenizer.pad_token_id
    return PrefixEncoder(tokenizer, int(limit)), backend
