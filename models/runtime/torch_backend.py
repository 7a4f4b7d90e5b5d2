"""Torch runtime: fp32 on CPU; fp16 (or bf16 via FGRM_TORCH_DTYPE) on a CUDA device."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_network


class TorchBackend:
    name = "torch"
    batch_invariant = True

    def __init__(self, checkpoint: str | Path, device: str | None = None, dtype: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or os.environ.get("FGRM_TORCH_DTYPE") or ("float16" if self.device.type == "cuda" else "float32")
        self.dtype = getattr(torch, dtype)
        self.net = load_network(checkpoint).to(self.device, self.dtype)
        self.provider = f"{self.device}:{dtype}"

    @torch.inference_mode()
    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)).to(self.device)
        mask = torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64)).to(self.device)
        seg, seq = self.net(ids, mask)
        return {"segment_logits": seg.float().cpu().numpy(), "sequence_scores": seq.float().cpu().numpy()}

    def health(self) -> bool:
        return True
