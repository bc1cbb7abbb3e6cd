"""`LLMEngine`: requests in, token/text deltas out, one `step()` at a time.

Disaggregation hooks: ``add_request(..., prefill_only=True)`` finishes after the first token with
``finish_reason="prefill_done"`` and keeps its KV until `release`; `export_kv` returns that prompt KV as a
dense, page-size independent ``[num_layers, 2, num_prompt_tokens, Hkv, D]`` tensor; ``add_request(...,
kv=that, first_token=id)`` imports it into fresh pages and continues decoding from ``first_token``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import torch

from thunder.engine.block_manager import BlockManager
from thunder.engine.config import ConfigError, EngineConfig, SamplingParams, resolve_dtype
from thunder.engine.detokenizer import IncrementalDetokenizer
from thunder.engine.model_runner import ModelRunner
from thunder.engine.sampler import Sampler
from thunder.engine.scheduler import Scheduler
from thunder.engine.sequence import Completion, FinishReason, RequestOutput, Sequence, SequenceStatus
from thunder.models import ModelConfig, Tokenizer, build_model, load_model_dir

__all__ = ["EngineStats", "LLMEngine"]


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


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        if config.device == "cpu":
            torch.set_num_threads(config.threads)
        self.model_dir = load_model_dir(config.model)
        self.model_config = ModelConfig.from_dir(self.model_dir)
        cfg = self.model_config
        if config.layer_range not in (None, (0, cfg.num_hidden_layers)):
            raise ConfigError(
                f"layer_range={config.layer_range}: LLMEngine runs whole models; pipeline stages load with "
                "thunder.models.build_model(..., layer_range=...)"
            )
        self.dtype = resolve_dtype(config.dtype, config.device)
        self.tokenizer = Tokenizer(self.model_dir)
        model = build_model(self.model_dir, dtype=self.dtype, device=config.device)
        itemsize = torch.empty(0, dtype=self.dtype).element_size()
        page_bytes = cfg.num_hidden_layers * 2 * config.page_size * cfg.kv_size * itemsize
        num_pages = int(config.kv_cache_gib * (1 << 30)) // page_bytes
        if num_pages < 1:
            raise ConfigError(
                f"kv_cache_gib={config.kv_cache_gib} holds no page of {page_bytes} bytes; raise kv_cache_gib"
            )
        self.max_model_len = min(
            config.max_model_len or cfg.max_position_embeddings, num_pages * config.page_size
        )
        self.runner = ModelRunner(
            model, num_pages=num_pages, page_size=config.page_size, device=config.device
        )
        self.block_manager = BlockManager(
            num_pages=num_pages,
            page_size=config.page_size,
            enable_prefix_caching=config.enable_prefix_caching,
        )
        self.scheduler = Scheduler(
            self.block_manager,
            max_num_seqs=config.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens,
        )
        self.sampler = Sampler(config.seed)
        eos = set(cfg.eos_token_ids)
        if self.tokenizer.eos_token_id is not None:
            eos.add(self.tokenizer.eos_token_id)
        self.eos_token_ids = frozenset(eos)
        self._seqs: dict[str, Sequence] = {}
        self._pending: list[RequestOutput] = []
        self._steps = 0
        self._ids = itertools.count()

    # -- requests ---------------------------------------------------------------------------------------

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        *,
        prefill_only: bool = False,
        kv: torch.Tensor | None = None,
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
        vocab = self.model_config.vocab_size
        bad = [t for t in prompt_token_ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {vocab})")
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
            detok=IncrementalDetokenizer(self.tokenizer, params.stop),
            stop_ids=stop_ids,
            prefill_only=prefill_only,
            generator=generator,
        )
        if kv is not None and first_token is not None:
            cfg = self.model_config
            expected = (cfg.num_hidden_layers, 2, n, cfg.num_key_value_heads, cfg.head_dim)
            if tuple(kv.shape) != expected:
                raise ValueError(f"kv has shape {tuple(kv.shape)}; expected {expected} for this prompt")
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

    def export_kv(self, request_id: str) -> torch.Tensor:
        """The held request's prompt KV: ``[num_layers, 2, num_prompt_tokens, Hkv, D]`` in the engine dtype."""
        seq = self._seqs.get(request_id)
        if seq is None or seq.status is not SequenceStatus.HELD:
            raise KeyError(
                f"request {request_id!r} holds no KV; add it with prefill_only=True and step first"
            )
        return self.runner.read_kv(seq, seq.num_prompt_tokens)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work() or bool(self._pending)

    # -- stepping ---------------------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        outputs, self._pending = self._pending, []
        batch = self.scheduler.schedule()
        if not batch.seqs:
            return outputs
        for seq in batch.seqs:
            if seq.pending_kv is not None:
                self.runner.write_kv(seq, seq.pending_kv)
                seq.pending_kv = None
        samplers, logits = self.runner.execute(batch)
        self._steps += 1
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            seq.num_computed_tokens += n
            self.block_manager.commit_full_pages(seq)
        if samplers:
            tokens = self.sampler(logits, [s.params for s in samplers], [s.generator for s in samplers])
            for seq, token in zip(samplers, tokens, strict=True):
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
            tokens = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
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
