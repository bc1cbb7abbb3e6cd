"""Llama-family decoder (Llama 2/3, SmolLM2, Mistral, Qwen2 biases) over flat ``[num_tokens, hidden]`` tokens.

No padding anywhere: a step's tokens from every sequence are concatenated, positions are given per token,
and attention goes through an object with ``append(layer, k, v)`` / ``run(layer, q)`` (the paged
`kernels_ext.PagedAttention`, or `DenseCausalAttention` for a no-cache reference forward).

Q/K/V and gate/up are fused into one matmul each at load time. On CPU in float32/bfloat16 the layers run the
fused C kernels of `kernels_ext.cpu_fused` between the matmuls (RMSNorm with the residual add, RoPE in place on
the QKV output, SiLU-and-mul); ``model.fused = False`` keeps the eager torch ops (the tests compare both).
A model may hold only layers ``[start, end)`` of the full stack (a pipeline stage): the first stage owns the
embedding, the last owns the final norm and ``lm_head``.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from kernels_ext import PrepackedLinear, cpu_fused
from thunder.models.config import ModelConfig
from thunder.models.rope import RotaryEmbedding

__all__ = ["AttentionLike", "DenseCausalAttention", "LlamaForCausalLM"]


class AttentionLike(Protocol):
    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None: ...

    def run(self, layer: int, q: torch.Tensor) -> torch.Tensor: ...


class DenseCausalAttention:
    """No-cache attention for ONE sequence whose tokens are all in the current forward (reference oracle)."""

    def __init__(self) -> None:
        self._kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        self._kv[layer] = (key, value)

    def run(self, layer: int, q: torch.Tensor) -> torch.Tensor:
        k, v = self._kv[layer]
        o = F.scaled_dot_product_attention(
            q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True, enable_gqa=True
        )
        return o.transpose(0, 1)


class Linear(nn.Linear):
    """`nn.Linear` that can switch to a pre-packed kernel once its weights are final (`prepack`)."""

    _packed: PrepackedLinear | None = None

    def prepack(self) -> None:
        self._packed = PrepackedLinear(
            self.weight.detach(), None if self.bias is None else self.bias.detach()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._packed(x) if self._packed is not None else F.linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size, dtype=dtype))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        self.qk_size = cfg.q_size + cfg.kv_size
        self.intermediate = cfg.intermediate_size
        o_bias = cfg.attention_bias and cfg.architecture != "Qwen2ForCausalLM"
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
        self.qkv_proj = Linear(cfg.hidden_size, cfg.q_size + 2 * cfg.kv_size, cfg.attention_bias, dtype=dtype)
        self.o_proj = Linear(cfg.q_size, cfg.hidden_size, o_bias, dtype=dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
        self.gate_up_proj = Linear(cfg.hidden_size, 2 * cfg.intermediate_size, cfg.mlp_bias, dtype=dtype)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, cfg.mlp_bias, dtype=dtype)

    def forward_fused(
        self, h: torch.Tensor, positions: torch.Tensor, rope: RotaryEmbedding, attn: AttentionLike, layer: int
    ) -> torch.Tensor:
        """Same as `forward` with the fused CPU kernels; updates ``h [T, hidden]`` (contiguous) in place."""
        t, hq, hkv = h.shape[0], self.num_heads, self.num_kv_heads
        qkv = self.qkv_proj(
            cpu_fused.add_rms_norm(h, None, self.input_layernorm.weight, self.input_layernorm.eps)
        )
        cpu_fused.rope_(qkv, hq + hkv, rope.cos, rope.sin_signed, positions)
        heads = qkv.view(t, -1, self.head_dim)
        attn.append(layer, heads[:, hq : hq + hkv], heads[:, hq + hkv :])
        o = self.o_proj(attn.run(layer, heads[:, :hq]).reshape(t, -1))
        norm = self.post_attention_layernorm
        gate_up = self.gate_up_proj(cpu_fused.add_rms_norm(h, o, norm.weight, norm.eps))
        return cpu_fused.add_(h, self.down_proj(cpu_fused.silu_mul(gate_up)))

    def forward(
        self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn: AttentionLike, layer: int
    ) -> torch.Tensor:
        t = h.shape[0]
        qkv = self.qkv_proj(self.input_layernorm(h))
        qk = RotaryEmbedding.apply(qkv[:, : self.qk_size].view(t, -1, self.head_dim), cos, sin)
        v = qkv[:, self.qk_size :].view(t, self.num_kv_heads, self.head_dim)
        attn.append(layer, qk[:, self.num_heads :], v)
        o = attn.run(layer, qk[:, : self.num_heads])
        h = h + self.o_proj(o.reshape(t, -1))
        gate_up = self.gate_up_proj(self.post_attention_layernorm(h))
        return h + self.down_proj(F.silu(gate_up[:, : self.intermediate]) * gate_up[:, self.intermediate :])


class LlamaForCausalLM(nn.Module):
    """Parameters are created uninitialised; fill them with `thunder.models.loader.load_weights`.

    ``forward(x, positions, attn)``: ``x`` is ``input_ids [T]`` (int64) on the first stage or hidden states
    ``[T, hidden]`` on later stages; ``positions [T]`` int64. Returns hidden states ``[T, hidden]`` (before
    the final norm). ``fused`` (default: where `kernels_ext.cpu_fused.supported`) picks the fused CPU kernels.
    ``compute_logits(hidden [N, hidden]) -> [N, vocab]`` in the model dtype, last stage only.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
        layer_range: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        start, end = layer_range or (0, cfg.num_hidden_layers)
        if not 0 <= start < end <= cfg.num_hidden_layers:
            raise ValueError(
                f"layer_range={layer_range}: need 0 <= start < end <= {cfg.num_hidden_layers} (num_hidden_layers)"
            )
        self.config, self.dtype, self.layer_range = cfg, dtype, (start, end)
        self.is_first, self.is_last = start == 0, end == cfg.num_hidden_layers
        with torch.device("meta"):
            self.embed_tokens = (
                nn.Embedding(cfg.vocab_size, cfg.hidden_size, dtype=dtype) if self.is_first else None
            )
            self.layers = nn.ModuleList(LlamaDecoderLayer(cfg, dtype) for _ in range(start, end))
            self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype) if self.is_last else None
            self.lm_head = (
                Linear(cfg.hidden_size, cfg.vocab_size, False, dtype=dtype) if self.is_last else None
            )
        self.to_empty(device=device)
        if self.is_first and self.is_last and cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight  # type: ignore[union-attr]
        self.fused = cpu_fused.supported(dtype, torch.device(device))
        self.rope = RotaryEmbedding(
            head_dim=cfg.head_dim,
            theta=cfg.rope_theta,
            scaling=cfg.rope_scaling,
            max_positions=cfg.max_position_embeddings,
            dtype=dtype,
            device=device,
        )

    def prepack(self) -> None:
        """Switch every linear layer to its pre-packed kernel; call once the weights are loaded."""
        for module in self.modules():
            if isinstance(module, Linear):
                module.prepack()

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, positions: torch.Tensor, attn: AttentionLike) -> torch.Tensor:
        h = self.embed_tokens(x) if self.embed_tokens is not None else x
        if self.fused and h.dtype == self.dtype and h.device.type == "cpu":
            # NOTE: the fused layers update h in place; never write into the caller's hidden states.
            h = h.clone() if self.embed_tokens is None else h.contiguous()
            pos = positions.to(torch.int64).contiguous()
            for i, layer in enumerate(self.layers):
                assert isinstance(layer, LlamaDecoderLayer)
                h = layer.forward_fused(h, pos, self.rope, attn, i)
            return h
        cos, sin = self.rope.tables(positions)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, attn, i)
        return h

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.norm is None or self.lm_head is None:
            raise RuntimeError(f"layer_range={self.layer_range} is not the last stage; it has no lm_head")
        if self.fused and hidden.dtype == self.dtype and hidden.device.type == "cpu":
            normed = cpu_fused.add_rms_norm(hidden.contiguous(), None, self.norm.weight, self.norm.eps)
            return self.lm_head(normed)
        return self.lm_head(self.norm(hidden))
