"""Torch runtime: fp32 by default on CPU and CUDA; fp16 / bf16 on request (`RuntimeOptions.torch_dtype`, FGRM_TORCH_DTYPE).

Half precision is faster on a GPU (H200: 2,943 items/s at batch 64 in fp16 against 2,260 in
fp32, docs/training/gpu_forward.jsonl) but its results depend on the batch they were computed
in well beyond 1e-5, so such a backend says `batch_invariant = False` and the engine runs it
one item per forward pass: rewards stay batch-invariant, at the cost of batching. fp32 on CUDA
is assumed batch-invariant to 1e-5 like on CPU; that was not measured on a GPU here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_network


class TorchBackend:
    name = "torch"

    def __init__(self, checkpoint: str | Path, device: str | None = None, dtype: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or "float32"
        self.dtype = getattr(torch, dtype)
        self.batch_invariant = self.dtype == torch.float32
        self.net = load_network(checkpoint).to(self.device, self.dtype)
        self.provider = f"{self.device}:{dtype}"

    @torch.inference_mode()
    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)).to(self.device)
        mask = torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64)).to(self.device)
        out = self.net(ids, mask)
        if isinstance(out, torch.Tensor):  # an EmbeddingNetwork
            return {"embeddings": out.float().cpu().numpy()}
        seg, seq = out
        return {"segment_logits": seg.float().cpu().numpy(), "sequence_scores": seq.float().cpu().numpy()}

    def health(self) -> bool:
        return True
