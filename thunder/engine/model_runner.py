"""`ModelRunner`: turns a `ScheduledBatch` into one flat forward over the paged KV cache.

Per step it builds ``input_ids [T]``, ``positions [T]`` and the CSR page table, calls
``PagedAttention.plan`` once, runs the model, and computes logits only for the rows that sample (the last
token of every sequence whose prompt is fully computed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels_ext import PagedAttention, allocate_paged_kv_cache, kv_token_slots, write_kv_rows
from thunder.engine.scheduler import ScheduledBatch
from thunder.engine.sequence import Sequence
from thunder.models import LlamaForCausalLM

__all__ = ["ModelRunner", "StepInputs", "page_table", "prepare_step"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepInputs:
    """One step's flat forward inputs as plain int lists (cheap to ship to pipeline stages).

    ``input_ids``/``positions`` ``[T]``; ``qo_indptr`` ``[B+1]``; the CSR page table ``kv_indptr [B+1]``,
    ``kv_indices``, ``kv_last [B]`` (KV lengths after this step); ``sample_rows``: rows that need logits.
    """

    input_ids: list[int]
    positions: list[int]
    qo_indptr: list[int]
    kv_indptr: list[int]
    kv_indices: list[int]
    kv_last: list[int]
    sample_rows: list[int]


def page_table(
    seqs: list[Sequence], kv_lens: list[int], page_size: int
) -> tuple[list[int], list[int], list[int]]:
    """CSR page table ``(indptr, indices, last_page_len)`` of ``seqs`` holding ``kv_lens`` tokens."""
    indptr, indices, last = [0], [], []
    for seq, kv_len in zip(seqs, kv_lens, strict=True):
        pages = -(-kv_len // page_size)
        indices.extend(seq.page_ids[:pages])
        indptr.append(indptr[-1] + pages)
        last.append(kv_len - (pages - 1) * page_size)
    return indptr, indices, last


def prepare_step(batch: ScheduledBatch, page_size: int) -> tuple[list[Sequence], StepInputs]:
    """The sequences that sample this step and the step's `StepInputs`."""
    ids: list[int] = []
    positions: list[int] = []
    qo_indptr = [0]
    kv_lens: list[int] = []
    sample_rows: list[int] = []
    samplers: list[Sequence] = []
    for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
        start = seq.num_computed_tokens
        ids.extend(seq.token_ids[start : start + n])
        positions.extend(range(start, start + n))
        qo_indptr.append(qo_indptr[-1] + n)
        kv_lens.append(start + n)
        if start + n == seq.num_tokens:
            sample_rows.append(qo_indptr[-1] - 1)
            samplers.append(seq)
    kv_indptr, kv_indices, kv_last = page_table(batch.seqs, kv_lens, page_size)
    inputs = StepInputs(
        input_ids=ids,
        positions=positions,
        qo_indptr=qo_indptr,
        kv_indptr=kv_indptr,
        kv_indices=kv_indices,
        kv_last=kv_last,
        sample_rows=sample_rows,
    )
    return samplers, inputs


class ModelRunner:
    def __init__(self, model: LlamaForCausalLM, *, num_pages: int, page_size: int, device: str) -> None:
        cfg = model.config
        self.model = model
        self.page_size = page_size
        self.device = torch.device(device)
        self.kv_cache = allocate_paged_kv_cache(
            num_layers=len(model.layers),
            num_pages=num_pages,
            page_size=page_size,
            num_kv_heads=cfg.num_key_value_heads,
            head_dim=cfg.head_dim,
            dtype=model.dtype,
            device=self.device,
        )
        self.attn = PagedAttention(self.kv_cache, num_qo_heads=cfg.num_attention_heads)

    def _page_table(self, seqs: list[Sequence], kv_lens: list[int]) -> tuple[torch.Tensor, ...]:
        indptr, indices, last = page_table(seqs, kv_lens, self.page_size)
        as_i32 = [torch.tensor(x, dtype=torch.int32) for x in (indptr, indices, last)]
        return as_i32[0], as_i32[1], as_i32[2]

    def execute(self, batch: ScheduledBatch) -> tuple[list[Sequence], torch.Tensor]:
        """Run the step; returns the sequences that sample and their logits ``[N, vocab]`` (model dtype)."""
        samplers, inputs = prepare_step(batch, self.page_size)
        hidden = self.forward(inputs)
        if not samplers:
            return [], torch.empty(0)
        return samplers, self.logits(inputs, hidden)

    def forward(self, inputs: StepInputs, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """This model's layers over one step: ``hidden [T, hidden]`` in (None on the first stage: the token
        ids of ``inputs`` are embedded), ``[T, hidden]`` out. Appends the step's KV to this runner's pages."""
        i32 = [
            torch.tensor(x, dtype=torch.int32)
            for x in (inputs.qo_indptr, inputs.kv_indptr, inputs.kv_indices, inputs.kv_last)
        ]
        self.attn.plan(*i32)
        x = (
            torch.tensor(inputs.input_ids, dtype=torch.int64, device=self.device)
            if hidden is None
            else hidden.to(self.device)
        )
        pos = torch.tensor(inputs.positions, dtype=torch.int64, device=self.device)
        return self.model(x, pos, self.attn)

    def logits(self, inputs: StepInputs, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits ``[N, vocab]`` of the step's sampling rows (last stage only)."""
        rows = torch.tensor(inputs.sample_rows, dtype=torch.int64, device=self.device)
        return self.model.compute_logits(hidden.index_select(0, rows))

    def _seq_rows(self, seq: Sequence, num_tokens: int) -> torch.Tensor:
        indptr, indices, _ = self._page_table([seq], [num_tokens])
        zeros = torch.zeros(num_tokens, dtype=torch.int32)
        return kv_token_slots(zeros, torch.arange(num_tokens), indptr, indices, self.page_size).to(
            self.device
        )

    def write_kv(self, seq: Sequence, kv: torch.Tensor) -> None:
        """Import ``kv [num_layers, 2, T, Hkv, D]`` into ``seq``'s first T token slots."""
        rows = self._seq_rows(seq, kv.shape[2])
        kv = kv.to(self.device)
        for layer in range(kv.shape[0]):
            write_kv_rows(self.kv_cache[layer], rows, kv[layer, 0], kv[layer, 1])

    def read_kv(self, seq: Sequence, num_tokens: int) -> torch.Tensor:
        """Dense ``[num_layers, 2, num_tokens, Hkv, D]`` copy of ``seq``'s first ``num_tokens`` tokens."""
        rows = self._seq_rows(seq, num_tokens)
        flat = self.kv_cache.view(self.kv_cache.shape[0], -1, *self.kv_cache.shape[-2:])
        k, v = flat.index_select(1, rows), flat.index_select(1, rows + self.page_size)
        return torch.stack((k, v), dim=1)
