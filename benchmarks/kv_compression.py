"""4-bit KV compression on the prefill->decode wire: size, speed, and what it does to the model's output.

    .venv/bin/python benchmarks/kv_compression.py               # everything (SmolLM2 part needs the engine)
    .venv/bin/python benchmarks/kv_compression.py --no-model    # sizes and pack/unpack throughput only

Prints, in one run:
1. bytes on the wire for int4 / fp16 / fp32 (tensor buffers plus the msgpack-encoded header) and the ratio to
   fp16 (target: int4 >= 3.5x smaller);
2. pack, unpack and pack+unpack throughput in GB/s of source (bf16) KV for the torch reference and the fast
   path, measured back to back on the same tensors, and fast/reference ratios;
3. on SmolLM2-135M-Instruct over a fixed prompt set: greedy-token agreement over 128 generated tokens when
   decode continues from int4-compressed KV versus uncompressed KV (engine ``prefill_only`` + ``export_kv`` +
   ``add_request(kv=..., first_token=...)``), and perplexity of held-out English text (second half of each
   passage, conditioned on the first half's KV) with and without compression (target: within 2%).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from functools import partial

import msgspec
import torch
import torch.nn.functional as F
from workloads import build_offline_workload, english_paragraphs  # benchmarks/ sibling (run as a script)

from kernels_ext import KV_TRANSFER_DTYPES, PackedKV, pack_kv, unpack_kv
from thunder.engine import EngineConfig, LLMEngine, SamplingParams
from thunder.models import LlamaForCausalLM

# (label, [layers, 2, tokens, kv_heads, head_dim]) — SmolLM2-135M and Llama-3-8B geometry (models.toml).
THROUGHPUT_SHAPES: tuple[tuple[str, tuple[int, int, int, int, int]], ...] = (
    ("smollm2-135m x 512 tok", (30, 2, 512, 3, 64)),
    ("smollm2-135m x 2048 tok", (30, 2, 2048, 3, 64)),
    ("llama-3-8b x 512 tok", (32, 2, 512, 8, 128)),
)


def wire_bytes(packed: PackedKV) -> int:
    """Everything a transport sends: the msgpack header plus the raw buffers."""
    header, buffers = packed.to_wire()
    return len(msgspec.msgpack.encode(header)) + sum(b.nbytes for b in buffers)


def report_wire_sizes(kvs: list[torch.Tensor], group_size: int) -> float:
    """Print total bytes per transfer dtype over ``kvs``; return the fp16/int4 ratio."""
    totals = {
        dtype: sum(wire_bytes(pack_kv(kv, dtype=dtype, group_size=group_size)) for kv in kvs)  # type: ignore[arg-type]
        for dtype in KV_TRANSFER_DTYPES
    }
    tokens = sum(kv.shape[2] for kv in kvs)
    print(f"\n== bytes on the wire: {len(kvs)} requests, {tokens} prompt tokens, group_size={group_size} ==")
    print(f"{'dtype':<6} {'bytes':>12} {'bytes/token':>12} {'fp16 / this':>12}")
    for dtype, total in totals.items():
        print(f"{dtype:<6} {total:>12,} {total / tokens:>12,.1f} {totals['fp16'] / total:>11.2f}x")
    ratio = totals["fp16"] / totals["int4"]
    print(f"int4 vs fp16: {ratio:.2f}x smaller (target >= 3.5x): {'MET' if ratio >= 3.5 else 'NOT MET'}")
    return ratio


def _interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per function, timed round-robin so every one sees the same background load."""
    for fn in fns.values():
        fn()  # warm-up: allocator, lazily built tables
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report_throughput(group_size: int, repeats: int) -> None:
    """Reference vs fast pack/unpack on the same tensors, timed round-robin."""
    print(
        f"\n== pack/unpack throughput, GB/s of bf16 KV (median of {repeats}; torch threads = "
        f"{torch.get_num_threads()}) =="
    )
    print(f"{'shape':<26} {'impl':<10} {'pack':>8} {'unpack':>8} {'pack+unpack':>12}")
    impls = ("reference", "fast")
    for label, shape in THROUGHPUT_SHAPES:
        kv = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 2).to(torch.bfloat16)
        packed = pack_kv(kv, dtype="int4", group_size=group_size)
        fns: dict[str, Callable[[], object]] = {}
        for impl in impls:
            fns[f"pack/{impl}"] = partial(pack_kv, kv, dtype="int4", group_size=group_size, impl=impl)
            fns[f"unpack/{impl}"] = partial(unpack_kv, packed, impl=impl)
        seconds = _interleaved_medians(fns, repeats)
        gigabytes = kv.nbytes / 1e9
        rates = {
            impl: (
                gigabytes / seconds[f"pack/{impl}"],
                gigabytes / seconds[f"unpack/{impl}"],
                gigabytes / (seconds[f"pack/{impl}"] + seconds[f"unpack/{impl}"]),
            )
            for impl in impls
        }
        for impl in impls:
            print(
                f"{label:<26} {impl:<10} {rates[impl][0]:>8.2f} {rates[impl][1]:>8.2f} {rates[impl][2]:>12.2f}"
            )
        speedup = [f / r for f, r in zip(rates["fast"], rates["reference"], strict=True)]
        print(f"{label:<26} {'fast/ref':<10} {speedup[0]:>7.2f}x {speedup[1]:>7.2f}x {speedup[2]:>11.2f}x")


# -- SmolLM2 quality ---------------------------------------------------------------------------------------

WIRE_MODES = ("fp32", "fp16", "int4")  # compared with the prefill engine's KV imported as is ("direct")


def _through_wire(kv: torch.Tensor, mode: str, group_size: int) -> torch.Tensor:
    """What the decode side gets: pack, msgpack header + raw bytes, rebuild, dequantize to the engine dtype."""
    header, buffers = pack_kv(kv, dtype=mode, group_size=group_size).to_wire()  # type: ignore[arg-type]
    received = msgspec.msgpack.decode(msgspec.msgpack.encode({"header": header, "buffers": buffers}))
    return unpack_kv(PackedKV.from_wire(received["header"], received["buffers"]), out_dtype=kv.dtype)


def _run_to_completion(engine: LLMEngine) -> dict[str, list[int]]:
    tokens: dict[str, list[int]] = {}
    while engine.has_unfinished():
        for out in engine.step():
            tokens.setdefault(out.request_id, []).extend(out.new_token_ids)
    return tokens


def prefill_and_export(engine: LLMEngine, prompts: list[list[int]]) -> list[tuple[torch.Tensor, int]]:
    """Prefill-only every prompt; return each request's exported KV and first token, pages released."""
    for i, ids in enumerate(prompts):
        engine.add_request(f"p{i}", ids, SamplingParams(max_tokens=2, temperature=0), prefill_only=True)
    first = _run_to_completion(engine)
    handoffs = []
    for i in range(len(prompts)):
        handoffs.append((engine.export_kv(f"p{i}"), first[f"p{i}"][0]))
        engine.release(f"p{i}")
    return handoffs


def report_greedy_agreement(
    engine: LLMEngine, prompts: list[list[int]], group_size: int, new_tokens: int
) -> None:
    """Decode every prompt from imported KV once per wire mode (plus once colocated, with no handoff at
    all), in one continuous batch; compare each with the direct (uncompressed, in-memory) import.

    Free-running greedy outputs diverge for good after one flipped near-tie, so a teacher-forced figure is
    printed too: along the direct run's tokens, how often the argmax from the mode's prefix KV matches the
    argmax from the direct prefix KV (same dense forward for both; only the prompt KV differs).
    """
    handoffs = prefill_and_export(engine, prompts)
    received = [{mode: _through_wire(kv, mode, group_size) for mode in WIRE_MODES} for kv, _ in handoffs]
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    for i, (kv, first) in enumerate(handoffs):
        engine.add_request(f"d{i}/colocated", prompts[i], params)
        engine.add_request(f"d{i}/direct", prompts[i], params, kv=kv, first_token=first)
        for mode in WIRE_MODES:
            engine.add_request(f"d{i}/{mode}", prompts[i], params, kv=received[i][mode], first_token=first)
    outs = _run_to_completion(engine)
    model = engine.runner.model
    forced = dict.fromkeys(WIRE_MODES, 0)
    for i, (kv, first) in enumerate(handoffs):
        ids = [first, *outs[f"d{i}/direct"]]
        start = len(prompts[i])
        want = _logits(model, ids, start, PrefixKVAttention(kv))
        for mode in WIRE_MODES:
            got = _logits(model, ids, start, PrefixKVAttention(received[i][mode]))
            forced[mode] += int((got.argmax(-1) == want.argmax(-1)).sum())
    print(
        f"\n== greedy-token agreement with the direct KV import: {len(prompts)} prompts x {new_tokens} tokens =="
    )
    print(
        f"{'decode from':<12} {'same position':>14} {'mean common prefix':>21} {'identical':>10} "
        f"{'teacher-forced top-1':>21}"
    )
    for mode in ("colocated", *WIRE_MODES):
        same = prefix = identical = 0
        for i, (_, first) in enumerate(handoffs):
            ref = [first, *outs[f"d{i}/direct"]]
            got = outs[f"d{i}/colocated"] if mode == "colocated" else [first, *outs[f"d{i}/{mode}"]]
            assert len(ref) == len(got) == new_tokens, (len(ref), len(got))
            same += sum(a == b for a, b in zip(ref, got, strict=True))
            common = next((k for k, (a, b) in enumerate(zip(ref, got, strict=True)) if a != b), new_tokens)
            prefix += common
            identical += common == new_tokens
        total = len(prompts) * new_tokens
        teacher = f"{forced[mode] / total:.1%}" if mode in forced else "-"
        print(
            f"{mode:<12} {same / total:>14.1%} {prefix / len(prompts):>15.1f} / {new_tokens} "
            f"{identical:>5} / {len(prompts)} {teacher:>21}"
        )


class PrefixKVAttention:
    """Attention for one sequence continuing after a given prefix KV ``[L, 2, P, Hkv, D]``."""

    def __init__(self, prefix: torch.Tensor) -> None:
        self.prefix = prefix
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        self.kv[layer] = (
            torch.cat([self.prefix[layer, 0].to(key.dtype), key]),
            torch.cat([self.prefix[layer, 1].to(value.dtype), value]),
        )

    def run(self, layer: int, q: torch.Tensor) -> torch.Tensor:
        k, v = self.kv[layer]
        past = k.shape[0] - q.shape[0]
        mask = torch.arange(k.shape[0])[None, :] <= torch.arange(q.shape[0])[:, None] + past
        o = F.scaled_dot_product_attention(
            q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask, enable_gqa=True
        )
        return o.transpose(0, 1)


def _logits(model: LlamaForCausalLM, ids: list[int], start: int, attn: PrefixKVAttention) -> torch.Tensor:
    """fp32 logits ``[len(ids), vocab]`` for ``ids`` at positions ``start...``, after ``attn``'s prefix."""
    return model.compute_logits(model(torch.tensor(ids), torch.arange(start, start + len(ids)), attn))


def _nll(model: LlamaForCausalLM, ids: list[int], start: int, attn: PrefixKVAttention) -> torch.Tensor:
    """Summed negative log-likelihood of ``ids[1:]`` given positions from ``start``; ``[]`` float64."""
    logits = _logits(model, ids, start, attn)[:-1]
    return F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").double()


def report_perplexity(engine: LLMEngine, passages: list[list[int]], group_size: int) -> None:
    """Perplexity of each passage's second half, conditioned on the engine's KV of its first half."""
    halves = [(ids[: len(ids) // 2], ids[len(ids) // 2 :]) for ids in passages]
    handoffs = prefill_and_export(engine, [head for head, _ in halves])
    model = engine.runner.model
    nll = {mode: torch.zeros((), dtype=torch.float64) for mode in ("direct", *WIRE_MODES)}
    for (head, tail), (kv, _) in zip(halves, handoffs, strict=True):
        for mode in nll:
            prefix = kv if mode == "direct" else _through_wire(kv, mode, group_size)
            nll[mode] += _nll(model, tail, len(head), PrefixKVAttention(prefix))
    scored = sum(len(tail) - 1 for _, tail in halves)
    print(f"\n== perplexity of held-out English: {len(passages)} passages, {scored} scored tokens ==")
    base = math.exp(nll["direct"] / scored)
    print(f"{'kv':<7} {'perplexity':>11} {'vs direct':>10}")
    for mode, total in nll.items():
        ppl = math.exp(total / scored)
        print(f"{mode:<7} {ppl:>11.4f} {ppl / base - 1:>+10.3%}")
    gap = math.exp(nll["int4"] / scored) / base - 1
    print(
        f"int4 perplexity within 2% of uncompressed: {'MET' if abs(gap) <= 0.02 else 'NOT MET'} ({gap:+.3%})"
    )


def held_out_passages(engine: LLMEngine, count: int, tokens: int) -> list[list[int]]:
    """``count`` passages of ``tokens`` tokens from the end of the English corpus (prompts come from its start
    only by chance; nothing here was tuned on it)."""
    paragraphs = english_paragraphs()[::-1]
    passages: list[list[int]] = []
    ids: list[int] = []
    for paragraph in paragraphs:
        ids += engine.tokenizer.encode(paragraph + "\n\n", add_special_tokens=False)
        if len(ids) >= tokens:
            passages.append(ids[:tokens])
            ids = []
            if len(passages) == count:
                return passages
    raise ValueError(f"the corpus holds fewer than {count} passages of {tokens} tokens; ask for fewer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per measurement")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on this 2-core machine each device actor owns one core, and "
        "multi-threaded torch collapses when other processes share the cores)",
    )
    parser.add_argument("--prompts", type=int, default=32, help="greedy-agreement prompts (16-64 tokens)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--passages", type=int, default=32, help="perplexity passages")
    parser.add_argument("--passage-tokens", type=int, default=256)
    parser.add_argument("--no-model", action="store_true", help="skip the SmolLM2 sections")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.no_model:
        kvs = [torch.randn((30, 2, n, 3, 64), dtype=torch.bfloat16) for n in (16, 37, 64, 128)]
        report_wire_sizes(kvs, args.group_size)
    else:
        config = EngineConfig(num_threads=args.threads, enable_prefix_caching=False, kv_cache_gib=0.5)
        engine = LLMEngine(config)
        print(f"SmolLM2-135M-Instruct, engine dtype {engine.dtype}, {args.threads} thread(s)")
        tokenizer = engine.tokenizer
        workload = build_offline_workload(
            lambda text: tokenizer.encode(text, add_special_tokens=False),
            tokenizer.decode,
            num_requests=args.prompts,
        )
        prompts = [list(p) for p in workload.prompt_token_ids]
        report_wire_sizes([kv for kv, _ in prefill_and_export(engine, prompts)], args.group_size)
        report_greedy_agreement(engine, prompts, args.group_size, args.new_tokens)
        report_perplexity(
            engine, held_out_passages(engine, args.passages, args.passage_tokens), args.group_size
        )
    report_throughput(args.group_size, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
