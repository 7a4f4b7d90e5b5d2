"""The reward network: one encoder, a 2-way classifier per segment head, a scalar per sequence head.

Segment heads classify the marker token placed before each segment (error / no error, as in
the paper). Sequence heads score the whole input from the attention-masked mean of the
encoder's states (all-MiniLM-L6-v2 was itself trained with mean pooling).
"""
from __future__ import annotations

import torch
from torch import nn


class RewardNetwork(nn.Module):
    def __init__(self, encoder: nn.Module, segment_heads: list[str], sequence_heads: list[str], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.segment_heads = list(segment_heads)
        self.sequence_heads = list(sequence_heads)
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.segment_head = nn.Linear(hidden, 2 * max(1, len(self.segment_heads)))
        self.sequence_head = nn.Linear(hidden, max(1, len(self.sequence_heads)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns segment_logits (B, T, n_segment_heads, 2) and sequence_scores (B, n_sequence_heads)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        hidden = self.dropout(hidden)
        b, t, _ = hidden.shape
        seg = self.segment_head(hidden).view(b, t, -1, 2)[:, :, : len(self.segment_heads)]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        seq = self.sequence_head(pooled)[:, : len(self.sequence_heads)]
        return seg, seq


class EmbeddingNetwork(nn.Module):
    """A frozen sentence encoder: attention-masked mean of the last states, L2-normalised
    (how all-MiniLM-L6-v2 was trained to embed). Output (B, hidden) float32."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.dim = int(encoder.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
