"""Offline-throughput runner for transformers: static batched `generate` or continuous-batching `generate_batch`.

Run by benchmarks/offline_throughput.py with `bench-venvs/hf/bin/python`:
`--mode static` pads the whole workload into one batch (left padding); `--mode cb` hands it to
`generate_batch`, transformers' paged-KV continuous-batching manager.
"""

from __future__ import annotations

from runner_common import Generate, parse_args, run

KV_CACHE_GIB = 2.0  # the KV pool every system gets (vLLM: VLLM_CPU_KVCACHE_SPACE=2)


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], modes=("static", "cb"))

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, ContinuousBatchingConfig, GenerationConfig

    torch.set_num_threads(args.threads)
    pad = 2  # <|im_end|>: SmolLM2's eos doubles as pad; padded positions are masked out

    def load() -> Generate:
        model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, args.dtype)).eval()

        @torch.inference_mode()
        def static(prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
            width = max(len(p) for p in prompts)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
            # NOTE: min_new_tokens == max_new_tokens is how `generate` ignores EOS (it masks EOS out).
            out = model.generate(
                ids, attention_mask=mask, max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                do_sample=False, pad_token_id=pad,
            )  # fmt: skip
            return out[:, width:].tolist()

        # NOTE: left alone, generate_batch sizes its paged KV cache from free RAM (14 GiB here, re-allocated on
        # every call). Give it what vLLM and thunder get: 2 GiB of KV, no prefix sharing.
        kv_bytes_per_token = 2 * model.config.num_hidden_layers * model.config.num_key_value_heads
        kv_bytes_per_token *= model.config.head_dim * model.dtype.itemsize
        cb_config = ContinuousBatchingConfig(allow_block_sharing=False, seed=0)
        cb_config.num_blocks = int(KV_CACHE_GIB * 2**30 // (kv_bytes_per_token * cb_config.page_size))

        def continuous(prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
            # NOTE: eos_token_id=-1 disables stopping in the continuous-batching manager (its `ignore_eos`).
            config = GenerationConfig(
                max_new_tokens=max_tokens, do_sample=False, eos_token_id=-1, pad_token_id=pad
            )
            results = model.generate_batch(
                inputs=prompts,
                generation_config=config,
                continuous_batching_config=cb_config,
                progress_bar=False,
            )
            by_prompt = sorted(results.values(), key=lambda r: int(r.request_id.rsplit("_", 1)[-1]))
            return [list(r.generated_tokens) for r in by_prompt]

        return static if args.mode == "static" else continuous

    run(
        system=f"hf-{args.mode}",
        args=args,
        load=load,
        versions={"transformers": transformers.__version__, "torch": torch.__version__},
    )


if __name__ == "__main__":
    main()
