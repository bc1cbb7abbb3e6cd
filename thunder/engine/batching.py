"""`BatchingEngine`: the request bookkeeping every engine shares — admission, continuous batching, stop rules,
outputs, disaggregation hooks and stats. Subclasses supply only how one scheduled batch is *executed*.

`LLMEngine` executes with real weights; `SimEngine` with the planner's cost model and placeholder tokens.
Both therefore schedule, preempt, stop and report identically, which is what lets the simulator stand in for
the real engine inside the serving runtime.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from thunder.engine.block_manager import BlockManager
from thunder.engine.config import SamplingParams
from thunder.engine.detokenizer import IncrementalDetokenizer
from thunder.engine.scheduler import ScheduledBatch, Scheduler
from thunder.engine.sequence import Completion, FinishReason, RequestOutput, Sequence, SequenceStatus

if TYPE_CHECKING:
    from thunder.models import Tokenizer

__all__ = ["BatchingEngine", "EngineStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineStats:
    running: int
    waiting: int
    held: int
    kv_pages_used: int
    kv_pages_total: int
    steps: int  # monotonically increasing; a watchdog reads progress from it
    num_preemptions: int
    prefix_cache_hit_tokens: int
    prefix_cache_query_tokens: int


class BatchingEngine:
    """Requests in, `RequestOutput`s out, one `step()` at a time. Not thread-safe.

    Subclasses call `_init_batching` from ``__init__`` and implement `_execute` (plus `export_kv` and,
    if imported KV is not a tensor, `_check_import`).
    """

    tokenizer: Tokenizer
    max_model_len: int
    vocab_size: int

    def _init_batching(
        self,
        *,
        tokenizer: Tokenizer,
        vocab_size: int,
        max_model_len: int,
        eos_token_ids: frozenset[int],
        num_pages: int,
        page_size: int,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        enable_prefix_caching: bool,
    ) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.max_model_len = max_model_len
        self.eos_token_ids = eos_token_ids
        self.block_manager = BlockManager(
            num_pages=num_pages, page_size=page_size, enable_prefix_caching=enable_prefix_caching
        )
        self.scheduler = Scheduler(
            self.block_manager, max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens
        )
        self._seqs: dict[str, Sequence] = {}
        self._pending: list[RequestOutput] = []
        self._steps = 0
        self._ids = itertools.count()

    # -- what a subclass provides -----------------------------------------------------------------------

    def _execute(self, batch: ScheduledBatch) -> list[tuple[Sequence, int]]:
        """Run ``batch`` (``seqs[i]`` computes its next ``num_new_tokens[i]`` tokens, starting at its
        ``num_computed_tokens``; imported ``pending_kv`` must be consumed) and return the sampled token of
        every sequence whose last token was computed."""
        raise NotImplementedError

    def _check_import(self, kv: Any, num_prompt_tokens: int) -> None:
        """Raise ValueError unless ``kv`` is this engine's prompt KV for ``num_prompt_tokens`` tokens."""
        raise NotImplementedError

    def export_kv(self, request_id: str) -> Any:
        raise NotImplementedError

    # -- requests ---------------------------------------------------------------------------------------

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        *,
        prefill_only: bool = False,
        kv: Any = None,
        first_token: int | None = None,
    ) -> None:
        """Queue a request. With ``kv``/``first_token`` it resumes from another engine's prefill."""
        if request_id in self._seqs:
            raise ValueError(f"request_id={request_id!r} is already in use; pick a unique id")
        n = len(prompt_token_ids)
        if n == 0:
            raise ValueError("prompt_token_ids is empty; give at least one token")
        if n >= self.max_model_len:
            raise ValueError(
                f"prompt has {n} tokens but max_model_len={self.max_model_len} (model context and KV pool); "
                "shorten the prompt or raise kv_cache_gib"
            )
        bad = [t for t in prompt_token_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})")
        if (kv is None) != (first_token is None):
            raise ValueError("kv and first_token go together: pass both to import a prefill, or neither")
        stop_ids = frozenset(params.stop_token_ids) | (
            frozenset() if params.ignore_eos else self.eos_token_ids
        )
        generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        seq = Sequence(
            request_id=request_id,
            prompt_token_ids=list(prompt_token_ids),
            params=params,
            detok=IncrementalDetokenizer(self.tokenizer, tuple(params.stop)),
            stop_ids=stop_ids,
            prefill_only=prefill_only,
            generator=generator,
        )
        if kv is not None and first_token is not None:
            self._check_import(kv, n)
            seq.pending_kv = kv
            seq.token_ids.append(int(first_token))
            seq.detok.add(int(first_token))
            seq.detok.mark_emitted()
            if seq.num_output_tokens >= params.max_tokens:
                self._seqs[request_id] = seq
                self._finish(seq, "length", [])
                return
        self._seqs[request_id] = seq
        self.scheduler.add(seq)

    def abort(self, request_id: str) -> None:
        """Stop a request; its final output (``finish_reason="abort"``) comes with the next `step`."""
        seq = self._seqs.get(request_id)
        if seq is None or seq.status in (SequenceStatus.FINISHED, SequenceStatus.HELD):
            return
        self._finish(seq, "abort", [])

    def release(self, request_id: str) -> None:
        """Free a held (``prefill_only``) request's KV pages."""
        seq = self._seqs.pop(request_id, None)
        if seq is not None:
            self.scheduler.remove(seq)
            seq.status = SequenceStatus.FINISHED

    def _held(self, request_id: str) -> Sequence:
        seq = self._seqs.get(request_id)
        if seq is None or seq.status is not SequenceStatus.HELD:
            raise KeyError(
                f"request {request_id!r} holds no KV; add it with prefill_only=True and step first"
            )
        return seq

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work() or bool(self._pending)

    # -- stepping ---------------------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        outputs, self._pending = self._pending, []
        batch = self.scheduler.schedule()
        if not batch.seqs:
            return outputs
        sampled = self._execute(batch)
        self._steps += 1
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            seq.num_computed_tokens += n
            self.block_manager.commit_full_pages(seq)
        for seq, token in sampled:
            outputs.append(self._append_token(seq, token))
        return outputs

    def _append_token(self, seq: Sequence, token: int) -> RequestOutput:
        seq.token_ids.append(token)
        matched = seq.detok.add(token)
        reason: FinishReason | None = None
        if matched is not None or (token in seq.stop_ids):
            reason = "stop"
        elif seq.num_output_tokens >= seq.params.max_tokens or seq.num_tokens >= self.max_model_len:
            reason = "length"
        elif seq.prefill_only:
            reason = "prefill_done"
        if reason is None:
            return RequestOutput(
                request_id=seq.request_id,
                new_token_ids=(token,),
                new_text=seq.detok.take_new_text(finished=False),
                finished=False,
                finish_reason=None,
                num_prompt_tokens=seq.num_prompt_tokens,
                num_cached_tokens=seq.num_cached_tokens,
            )
        return self._finish(seq, reason, [token])

    def _finish(self, seq: Sequence, reason: FinishReason, new_tokens: list[int]) -> RequestOutput:
        seq.finish_reason = reason
        if reason == "prefill_done":
            self.scheduler.running.remove(seq)
            seq.status = SequenceStatus.HELD
        else:
            self.scheduler.remove(seq)
            seq.status = SequenceStatus.FINISHED
            del self._seqs[seq.request_id]
        out = RequestOutput(
            request_id=seq.request_id,
            new_token_ids=tuple(new_tokens),
            new_text=seq.detok.take_new_text(finished=True),
            finished=True,
            finish_reason=reason,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_cached_tokens=seq.num_cached_tokens,
        )
        if not new_tokens:  # abort / import-complete: delivered with the next step
            self._pending.append(out)
        return out

    # -- convenience ------------------------------------------------------------------------------------

    def generate(
        self, prompts: Seq[str] | Seq[list[int]], params: SamplingParams | Seq[SamplingParams] | None = None
    ) -> list[Completion]:
        """Run ``prompts`` (text, encoded raw, or token ids) to completion in one continuous batch."""
        plist = [params or SamplingParams()] * len(prompts) if not isinstance(params, Seq) else list(params)
        if len(plist) != len(prompts):
            raise ValueError(f"{len(plist)} SamplingParams for {len(prompts)} prompts; give one or one each")
        ids: list[str] = []
        prompt_ids: dict[str, list[int]] = {}
        for prompt, p in zip(prompts, plist, strict=True):
            rid = f"generate-{next(self._ids)}"
            tokens: list[int] = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)  # type: ignore[arg-type]
            self.add_request(rid, tokens, p)
            ids.append(rid)
            prompt_ids[rid] = tokens
        got: dict[str, list[int]] = {rid: [] for rid in ids}
        text: dict[str, list[str]] = {rid: [] for rid in ids}
        reasons: dict[str, FinishReason | None] = {}
        while len(reasons) < len(ids):
            for out in self.step():
                if out.request_id in got:
                    got[out.request_id].extend(out.new_token_ids)
                    text[out.request_id].append(out.new_text)
                    if out.finished:
                        reasons[out.request_id] = out.finish_reason
        return [
            Completion(
                request_id=rid,
                prompt_token_ids=tuple(prompt_ids[rid]),
                token_ids=tuple(got[rid]),
                text="".join(text[rid]),
                finish_reason=reasons[rid],
            )
            for rid in ids
        ]

    def stats(self) -> EngineStats:
        held = sum(1 for s in self._seqs.values() if s.status is SequenceStatus.HELD)
        return EngineStats(
            running=len(self.scheduler.running),
            waiting=len(self.scheduler.waiting),
            held=held,
            kv_pages_used=self.block_manager.num_used_pages,
            kv_pages_total=self.block_manager.num_pages,
            steps=self._steps,
            num_preemptions=self.scheduler.num_preemptions,
            prefix_cache_hit_tokens=self.block_manager.prefix_hit_tokens,
            prefix_cache_query_tokens=self.block_manager.prefix_query_tokens,
        )
