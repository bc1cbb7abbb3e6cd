"""What the HTTP layer costs per streamed token: the same requests consumed straight from a backend (the
baseline) and through the aiohttp server as SSE streams and as plain JSON, all in this one run.

The backend is the scripted zero-compute test double from the server tests, so the figures isolate the
server (plus the aiohttp client in the same process — an upper bound for the server's own share).

    .venv/bin/python benchmarks/server_overhead.py [--requests 64] [--tokens 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.thunder.server.scripted import ScriptedBackend  # noqa: E402
from thunder.engine import SamplingParams  # noqa: E402
from thunder.server import GenerateRequest, create_app, start  # noqa: E402

PROMPT = "benchmark prompt"


async def direct(backend: ScriptedBackend, n: int, tokens: int) -> int:
    async def one(i: int) -> int:
        req = GenerateRequest(
            request_id=f"direct-{i}", prompt_token_ids=backend.tokenizer.encode(PROMPT),
            params=SamplingParams(max_tokens=tokens, ignore_eos=True), arrival_time=time.monotonic(),
        )  # fmt: skip
        return sum([len(d.token_ids) async for d in backend.generate(req)])

    return sum(await asyncio.gather(*(one(i) for i in range(n))))


async def over_http(url: str, n: int, tokens: int, *, stream: bool) -> int:
    body = {"prompt": PROMPT, "max_tokens": tokens, "ignore_eos": True, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}

    async def one(http: aiohttp.ClientSession) -> int:
        async with http.post(f"{url}/v1/completions", json=body) as resp:
            assert resp.status == 200, await resp.text()
            if not stream:
                return (await resp.json())["usage"]["completion_tokens"]
            events = 0
            async for line in resp.content:
                events += line.startswith(b"data: {") and b'"text"' in line
            return events

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        return sum(await asyncio.gather(*(one(http) for _ in range(n))))


async def main(args: argparse.Namespace) -> None:
    backend = ScriptedBackend()
    backend.max_model_len = len(PROMPT) + args.tokens
    server = await start(create_app(backend), "127.0.0.1", 0)
    modes = {
        "direct (baseline)": lambda: direct(backend, args.requests, args.tokens),
        "HTTP SSE stream": lambda: over_http(server.url, args.requests, args.tokens, stream=True),
        "HTTP JSON (stream=false)": lambda: over_http(server.url, args.requests, args.tokens, stream=False),
    }
    rates: dict[str, list[float]] = {name: [] for name in modes}
    try:
        for _ in range(args.repeats):
            for name, run in modes.items():
                t0 = time.perf_counter()
                produced = await run()
                elapsed = time.perf_counter() - t0
                assert produced == args.requests * args.tokens, (name, produced)
                rates[name].append(produced / elapsed)
    finally:
        await server.close()
    base = statistics.median(rates["direct (baseline)"])
    print(f"{args.requests} concurrent requests x {args.tokens} tokens, median of {args.repeats} runs")
    print(f"{'mode':<26}{'tokens/s':>12}{'vs direct':>11}{'µs/token added':>16}")
    for name, values in rates.items():
        rate = statistics.median(values)
        added = (1 / rate - 1 / base) * 1e6
        print(f"{name:<26}{rate:>12,.0f}{rate / base:>10.2f}x{added:>16.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
