"""Engine test fixtures: the embedded model's directory and tokenizer, once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from thunder.engine import EngineConfig, LLMEngine
from thunder.models import Tokenizer, load_model_dir


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return load_model_dir("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path) -> Tokenizer:
    return Tokenizer(model_dir)


# A small pool (32 pages of 16 tokens) and a small token budget, so the mixed batch in the correctness tests
# exercises chunked prefill and preemption by recompute, not only the happy path.
# NOTE: one intra-op thread: on a shared 2-core machine two OpenMP threads stall each other at every barrier
# (10x slower forwards measured under load); correctness does not depend on the thread count.
TEST_THREADS = 1
SMALL_POOL_GIB = 32 * (30 * 2 * 16 * 3 * 64 * 4) / (1 << 30)


@pytest.fixture(scope="session")
def engine_fp32(model_dir: Path) -> LLMEngine:
    return LLMEngine(
        EngineConfig(
            model=str(model_dir),
            dtype="float32",
            kv_cache_gib=SMALL_POOL_GIB,
            max_num_batched_tokens=96,
            enable_prefix_caching=True,
            num_threads=TEST_THREADS,
        )
    )
