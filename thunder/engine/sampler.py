"""`Sampler`: greedy, temperature, top-k, top-p over a batch of logits ``[N, vocab]`` (any float dtype).

Greedy rows take one batched argmax. Sampled rows are filtered in one batch (temperature, top-k, top-p),
then each draws with its request's own generator (seeded requests are reproducible whatever they are
batched with) using the exponential-race form of categorical sampling: ``argmax(p / Exp(1))``.
"""

from __future__ import annotations

import torch

from kernels_ext import cpu_fused
from thunder.engine.config import SamplingParams

__all__ = ["Sampler", "filter_logits"]


def filter_logits(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask (to -inf) tokens outside each row's top-k (0 = off) and top-p nucleus (1.0 = off).

    ``logits [N, V]`` float32 (already temperature-scaled); ``top_k [N]`` int64; ``top_p [N]`` float32.
    """
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    vocab = logits.shape[-1]
    ranks = torch.arange(vocab, device=logits.device).expand_as(sorted_logits)
    k = torch.where(top_k > 0, top_k, torch.full_like(top_k, vocab))
    drop = ranks >= k[:, None]
    probs = sorted_logits.masked_fill(drop, float("-inf")).softmax(dim=-1)
    # NOTE: a token is kept when the mass *before* it is < top_p, so the top token always survives.
    drop |= (probs.cumsum(dim=-1) - probs) >= top_p[:, None]
    filtered = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, filtered)


def _first_max(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise index of the first maximum (``[N]`` int64), the greedy token of each row."""
    if logits.dim() == 2 and logits.stride(1) == 1 and cpu_fused.supported(logits.dtype, logits.device):
        return cpu_fused.argmax_rows(logits)  # serial C scan: ~4x faster than torch.max on a CPU core
    # NOTE: max().indices, not argmax(): same first-maximum rule, 4x faster on bfloat16 CPU tensors.
    return logits.max(dim=-1).indices


class Sampler:
    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(
        self, logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
    ) -> list[int]:
        """One token per row of ``logits [N, V]``; ``generators[i]`` None uses the engine's generator."""
        tokens = _first_max(logits).tolist()
        rows = [i for i, p in enumerate(params) if not p.greedy]
        if not rows:
            return tokens
        x = logits[rows].float().cpu()
        temps = torch.tensor([params[i].temperature for i in rows], dtype=torch.float32)
        x = x / temps[:, None]
        top_k = torch.tensor([params[i].top_k for i in rows], dtype=torch.int64)
        top_p = torch.tensor([params[i].top_p for i in rows], dtype=torch.float32)
        if bool((top_k > 0).any() or (top_p < 1).any()):
            x = filter_logits(x, top_k, top_p)
        probs = x.softmax(dim=-1)
        for j, i in enumerate(rows):
            gen = generators[i] or self.generator
            race = torch.empty_like(probs[j]).exponential_(generator=gen)
            tokens[i] = int((probs[j] / race).argmax())
        return tokens
