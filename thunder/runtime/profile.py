"""The short start-up profile: time real prefill and decode steps of an engine, feed `CostModel.calibrate`.

Timings go through the engine's public API (`add_request` / `step`), so they include the scheduler, the
sampler and the model runner — the same path that serves traffic.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from thunder.runtime.messages import Profile, ProfilePoint

if TYPE_CHECKING:
    from planner import ProfileSample
    from thunder.runtime.engines import Engine

__all__ = ["DEFAULT_PROFILE", "profile_engine", "to_samples"]

DEFAULT_PROFILE = Profile(prompt_lens=[16, 64, 192], batch_sizes=[1, 4, 16], decode_context=48)
"""A few seconds on two CPU cores for SmolLM2-135M; enough points to fit the 3 roofline constants."""
_ids = itertools.count()


def profile_engine(engine: Engine, profile: Profile, *, seed: int = 0) -> list[ProfilePoint]:
    """Time one prefill per prompt length (batch 1) and one decode step per batch size.

    Prompts are random token ids (no prefix-cache hits). The engine must be idle; it is idle again after.
    """
    from thunder.engine import SamplingParams

    rng = random.Random(seed)
    vocab = int(getattr(getattr(engine, "model_config", None), "vocab_size", 1000))
    params = SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True)

    def prompt(n: int) -> list[int]:
        return [rng.randrange(16, vocab) for _ in range(n)]

    def run(rids: list[str]) -> None:
        for rid in rids:
            engine.abort(rid)
        while engine.has_unfinished():
            engine.step()

    warm = f"profile-{next(_ids)}"
    engine.add_request(warm, prompt(8), params)
    engine.step()
    run([warm])
    points: list[ProfilePoint] = []
    for n in profile.prompt_lens:
        rid = f"profile-{next(_ids)}"
        engine.add_request(rid, prompt(n), params)
        points.append(ProfilePoint("prefill", 1, n, _timed(engine)))
        run([rid])
    for b in profile.batch_sizes:
        rids = [f"profile-{next(_ids)}" for _ in range(b)]
        for rid in rids:
            engine.add_request(rid, prompt(profile.decode_context), params)
        while engine.stats().waiting:  # prefill every sequence first (chunked prefill may take steps)
            engine.step()
        points.append(ProfilePoint("decode", b, profile.decode_context + 1, _timed(engine)))
        run(rids)
    return points


def _timed(engine: Engine) -> float:
    start = time.perf_counter()
    engine.step()
    return max(time.perf_counter() - start, 1e-6)


def to_samples(points: Iterable[ProfilePoint], gpu_type: str) -> list[ProfileSample]:
    """Profile points as the planner's `ProfileSample`s for device type `gpu_type`."""
    from planner import ProfileSample

    return [
        ProfileSample(
            phase=p.phase, gpu_type=gpu_type, batch_size=p.batch_size, seq_len=p.seq_len, seconds=p.seconds
        )
        for p in points
    ]
