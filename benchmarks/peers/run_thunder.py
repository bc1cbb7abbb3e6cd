"""Offline-throughput runner for thunder's own engine: `LLMEngine.generate` on token-id prompts.

Run by benchmarks/offline_throughput.py with thunder's venv (`.venv/bin/python`).
"""

from __future__ import annotations

from runner_common import Generate, parse_args, run


def main() -> None:
    args = parse_args(__doc__.split("\n")[0])

    import torch

    import thunder
    from thunder.engine import EngineConfig, LLMEngine, SamplingParams

    # NOTE: prefix caching off (vLLM's too): the protocol replays the same prompts, and a cache hit on a
    # repeat would measure the cache, not the engine. KV pool = vLLM's VLLM_CPU_KVCACHE_SPACE (2 GiB).
    config = EngineConfig(
        model=str(args.model_dir),
        dtype=args.dtype,
        num_threads=args.threads,
        kv_cache_gib=2.0,
        enable_prefix_caching=False,
        seed=0,
    )

    def load() -> Generate:
        engine = LLMEngine(config)

        def generate(prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
            params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
            return [list(c.token_ids) for c in engine.generate(prompts, params)]

        return generate

    run(
        system="thunder",
        args=args,
        load=load,
        versions={"thunder": getattr(thunder, "__version__", "dev"), "torch": torch.__version__},
        extra={
            "config": {
                "max_num_seqs": config.max_num_seqs,
                "max_num_batched_tokens": config.max_num_batched_tokens,
            }
        },
    )


if __name__ == "__main__":
    main()
