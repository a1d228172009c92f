"""Llama-style decoder: RMSNorm, rotary embeddings, SwiGLU MLP, causal SDPA attention.

Embedding and output head are untied: a pipeline split puts the embedding on the first stage and
the head on the last, and tying them would make two miners share (and merge) one tensor.
Parameters are initialised by name (`init_weights`), so a stage built alone holds exactly the
slice the whole model would hold for the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.determinism import derive_seed

INIT_STD = 0.02


@dataclass(kw_only=True, slots=True)
class ModelConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    ffn_hidden: int
    max_seq_len: int
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    bottleneck: int = 0
    """Width of the activations between pipeline stages (a learned down-projection at the end
    of each stage but the last, an up-projection at the start of each but the first); 0: none,
    the stages exchange the full `dim`."""

    def __post_init__(self) -> None:
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_heads} even-sized heads")
        if min(self.vocab_size, self.n_layers, self.ffn_hidden, self.max_seq_len) < 1:
            raise ValueError("vocab_size, n_layers, ffn_hidden and max_seq_len must be positive")
        if not 0 <= self.bottleneck <= self.dim:
            raise ValueError(f"bottleneck {self.bottleneck} must be in [0, dim={self.dim}]")

    @property
    def wire_dim(self) -> int:
        """The last dimension of the activations and gradients stages exchange."""
        return self.bottleneck or self.dim

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class Rotary(nn.Module):
    """Cosine and sine tables for rotary position embeddings (buffers, not saved)."""

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        half = config.head_dim // 2
        freqs = config.rope_theta ** (-torch.arange(half, dtype=torch.float64) / half)
        angles = torch.outer(torch.arange(config.max_seq_len, dtype=torch.float64), freqs)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        if seq_len > self.cos.shape[0]:
            raise ValueError(f"sequence of {seq_len} exceeds max_seq_len {self.cos.shape[0]}")
        return self.cos[:seq_len], self.sin[:seq_len]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.wqkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.wqkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v, is_causal=True
        )
        out: torch.Tensor = self.wo(y.transpose(1, 2).reshape(b, t, d))
        return out


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.w13 = nn.Linear(config.dim, 2 * config.ffn_hidden, bias=False)
        self.w2 = nn.Linear(config.ffn_hidden, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        out: torch.Tensor = self.w2(F.silu(gate) * up)
        return out


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.dim, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        out: torch.Tensor = x + self.mlp(self.mlp_norm(x))
        return out


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy, computed in float32."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


@torch.no_grad()
def init_weights(module: nn.Module, seed: int, config: ModelConfig) -> None:
    """Initialise every parameter from a generator seeded by (seed, full parameter name).

    Norm gains are 1; matrices are N(0, 0.02), residual output projections scaled by
    1/sqrt(2 n_layers). Values come from NumPy's PCG64, identical on every platform.
    """
    residual_std = INIT_STD / math.sqrt(2 * config.n_layers)
    for name, param in module.named_parameters():
        if name.endswith("norm.weight"):
            param.fill_(1.0)
            continue
        if name.startswith(("squeeze.", "expand.")):
            param.copy_(_bottleneck_init(seed, name, config))
            continue
        std = residual_std if name.endswith(("attn.wo.weight", "mlp.w2.weight")) else INIT_STD
        rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "init", name)))
        values = rng.standard_normal(tuple(param.shape), dtype=np.float32) * np.float32(std)
        param.copy_(torch.from_numpy(values))


def _bottleneck_init(seed: int, name: str, config: ModelConfig) -> torch.Tensor:
    """Boundary k's down-projection S (bottleneck x dim, N(0, 1/dim): rows nearly orthonormal,
    each compressed value with the residual stream's RMS) and its up-projection
    S^T * sqrt(dim / bottleneck), drawn from the same seed on the two stages that hold them: at
    the start the next stage receives the residual stream's projection onto the bottleneck's
    subspace, scaled back to the stream's RMS (unscaled, the next stage started from a stream
    sqrt(bottleneck / dim) as large and the small model at R = 16 ended 9 % above the
    uncompressed loss after 4 windows, against 5 % scaled)."""
    boundary = name.split(".")[1]
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "init", f"bottleneck.{boundary}")))
    shape = (config.bottleneck, config.dim)
    values = rng.standard_normal(shape, dtype=np.float32) * np.float32(1 / math.sqrt(config.dim))
    down = torch.from_numpy(values)
    if name.startswith("squeeze."):
        return down
    up: torch.Tensor = down.T.contiguous() * math.sqrt(config.dim / config.bottleneck)
    return up


class Transformer(nn.Module):
    """The whole model in one module (reference for the stage split; no pipeline)."""

    def __init__(self, config: ModelConfig, *, seed: int | None = 0) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.rotary = Rotary(config)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if seed is not None:
            init_weights(self, seed, config)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of shape (batch, seq, vocab), or the scalar loss when targets are given."""
        h = self.embed(input_ids)
        cos, sin = self.rotary(input_ids.shape[1])
        for block in self.layers:
            h = block(h, cos, sin)
        logits: torch.Tensor = self.head(self.norm(h))
        return logits if targets is None else lm_loss(logits, targets)
