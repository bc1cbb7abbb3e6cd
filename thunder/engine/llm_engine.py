"""`LLMEngine`: requests in, token/text deltas out, one `step()` at a time.

Disaggregation hooks: ``add_request(..., prefill_only=True)`` finishes after the first token with
``finish_reason="prefill_done"`` and keeps its KV until `release`; `export_kv` returns that prompt KV as a
dense, page-size independent ``[num_layers, 2, num_prompt_tokens, Hkv, D]`` tensor; ``add_request(...,
kv=that, first_token=id)`` imports it into fresh pages and continues decoding from ``first_token``.
"""

from __future__ import annotations

import torch

from thunder.engine.batching import BatchingEngine, EngineStats
from thunder.engine.config import ConfigError, EngineConfig, resolve_dtype
from thunder.engine.model_runner import ModelRunner
from thunder.engine.sampler import Sampler
from thunder.engine.scheduler import ScheduledBatch
from thunder.engine.sequence import Sequence
from thunder.models import ModelConfig, Tokenizer, build_model, load_model_dir

__all__ = ["EngineStats", "LLMEngine"]


class LLMEngine(BatchingEngine):
    """The real engine: paged-KV forward passes with the model's weights (scheduling in `BatchingEngine`)."""

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
        tokenizer = Tokenizer(self.model_dir)
        model = build_model(self.model_dir, dtype=self.dtype, device=config.device)
        itemsize = torch.empty(0, dtype=self.dtype).element_size()
        page_bytes = cfg.num_hidden_layers * 2 * config.page_size * cfg.kv_size * itemsize
        num_pages = int(config.kv_cache_gib * (1 << 30)) // page_bytes
        if num_pages < 1:
            raise ConfigError(
                f"kv_cache_gib={config.kv_cache_gib} holds no page of {page_bytes} bytes; raise kv_cache_gib"
            )
        self.runner = ModelRunner(
            model, num_pages=num_pages, page_size=config.page_size, device=config.device
        )
        self.sampler = Sampler(config.seed)
        eos = set(cfg.eos_token_ids)
        if tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)
        self._init_batching(
            tokenizer=tokenizer,
            vocab_size=cfg.vocab_size,
            max_model_len=min(
                config.max_model_len or cfg.max_position_embeddings, num_pages * config.page_size
            ),
            eos_token_ids=frozenset(eos),
            num_pages=num_pages,
            page_size=config.page_size,
            max_num_seqs=config.max_num_seqs,
            max_num_batched_tokens=config.max_num_batched_tokens,
            enable_prefix_caching=config.enable_prefix_caching,
        )

    def _check_import(self, kv: torch.Tensor, num_prompt_tokens: int) -> None:
        cfg = self.model_config
        expected = (cfg.num_hidden_layers, 2, num_prompt_tokens, cfg.num_key_value_heads, cfg.head_dim)
        if tuple(kv.shape) != expected:
            raise ValueError(f"kv has shape {tuple(kv.shape)}; expected {expected} for this prompt")

    def export_kv(self, request_id: str) -> torch.Tensor:
        """The held request's prompt KV: ``[num_layers, 2, num_prompt_tokens, Hkv, D]`` in the engine dtype."""
        seq = self._held(request_id)
        return self.runner.read_kv(seq, seq.num_prompt_tokens)

    def _execute(self, batch: ScheduledBatch) -> list[tuple[Sequence, int]]:
        for seq in batch.seqs:
            if seq.pending_kv is not None:
                self.runner.write_kv(seq, seq.pending_kv)
                seq.pending_kv = None
        samplers, logits = self.runner.execute(batch)
        if not samplers:
            return []
        tokens = self.sampler(logits, [s.params for s in samplers], [s.generator for s in samplers])
        return list(zip(samplers, tokens, strict=True))
