"""A small pre-LayerNorm transformer encoder over MNIST-1D signals, built from nn.Linear.

Attention uses separate q/k/v/out nn.Linear projections and F.scaled_dot_product_attention
(never nn.MultiheadAttention, whose fused fast path hides its MACs from FLOP counters).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SparsebenchError
from .base import register_model


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q, k, v and output projections."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        if d_model % heads:
            raise SparsebenchError(f"d_model {d_model} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        return x.view(batch, tokens, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(x.shape))


class EncoderBlock(nn.Module):
    """Pre-LN block: x + attn(ln1(x)), then x + mlp(ln2(x)) with a GELU MLP of 4x width."""

    def __init__(self, d_model: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, mlp_ratio * d_model)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp_ratio * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TinyTransformer(nn.Module):
    """Treats a (B, seq_len) signal as seq_len one-feature tokens; mean-pools to a Linear head."""

    def __init__(self, seq_len: int, d_model: int, heads: int, depth: int, num_classes: int):
        super().__init__()
        self.seq_len = seq_len
        self.embed = nn.Linear(1, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.blocks = nn.Sequential(*(EncoderBlock(d_model, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(x.shape[0], self.seq_len, 1)
        positions = torch.arange(self.seq_len, device=x.device)
        h = self.blocks(self.embed(tokens) + self.pos(positions))
        return self.head(self.norm(h.mean(dim=1)))


@register_model(
    "tiny_transformer",
    input_shape=(1, 40),
    dataset="mnist1d",
    description="2-block pre-LN transformer (d=128, 4 heads) over MNIST-1D as 40 tokens",
)
def tiny_transformer(
    num_classes: int = 10, d_model: int = 128, heads: int = 4, depth: int = 2, seq_len: int = 40
) -> nn.Module:
    """A pre-LN transformer encoder classifier over a (B, seq_len) signal."""
    return TinyTransformer(seq_len, d_model, heads, depth, num_classes)


@register_model(
    "tiny_transformer_wide",
    input_shape=(1, 40),
    dataset="mnist1d",
    description="4-block pre-LN transformer (d=256, 4 heads): a Linear-heavy workload",
    d_model=256,
    depth=4,
)
def tiny_transformer_wide(
    num_classes: int = 10, d_model: int = 256, heads: int = 4, depth: int = 4, seq_len: int = 40
) -> nn.Module:
    """The tiny transformer at width 256 and depth 4 (Linear dims are multiples of 64)."""
    return TinyTransformer(seq_len, d_model, heads, depth, num_classes)
