"""Embed thunder in your own asyncio program: the disaggregated runtime as a library.

    .venv/bin/python examples/embed.py

Starts SmolLM2-135M-Instruct on this machine as 1 prefill + 1 decode device process (KV handed off in
4 bits), then runs a few requests concurrently next to the program's own tasks.
"""

from __future__ import annotations

import asyncio
import time

import thunder


async def heartbeat(stop: asyncio.Event) -> None:
    """The program's own work keeps running while thunder serves (nothing blocks the loop)."""
    while not stop.is_set():
        print(".", end="", flush=True)
        await asyncio.sleep(0.5)


async def main() -> None:
    started = time.perf_counter()
    async with await thunder.AsyncLLM.start(on_progress=lambda step: print(f"[thunder] {step}")) as llm:
        print(f"ready in {time.perf_counter() - started:.1f}s; plan: "
              + ", ".join(f"{g.id}={g.phase}" for g in llm.plan.groups))

        stop = asyncio.Event()
        ticker = asyncio.create_task(heartbeat(stop))
        questions = ["What is the capital of France?", "Name three colours.", "What is 2 + 2?"]
        answers = await asyncio.gather(*(
            llm.generate([{"role": "user", "content": q}], max_tokens=32, temperature=0) for q in questions))
        stop.set()
        await ticker
        print()
        for q, a in zip(questions, answers, strict=True):
            print(f"Q: {q}\nA: {a.text.strip()}  [{len(a.token_ids)} tokens, {a.finish_reason}]\n")

        print("streaming: ", end="")
        async for delta in llm.stream("Once upon a time", max_tokens=24, temperature=0):
            print(delta.text, end="", flush=True)
        print()
        live = llm.runtime.live
        if live.kv_wire_bytes:
            print(f"KV on the wire: {live.kv_wire_bytes} bytes in {live.handoffs} handoffs "
                  f"({live.kv_fp16_bytes / live.kv_wire_bytes:.2f}x smaller than fp16)")


if __name__ == "__main__":
    asyncio.run(main())
