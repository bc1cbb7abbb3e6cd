"""DeviceCore on a real engine (SmolLM2, float32): prefill -> KV handoff -> decode equals offline greedy;
int4 handoffs are >= 3.5x smaller than fp16; aborts free pages and drop KV that arrives late."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from thunder.engine import EngineConfig, LLMEngine, SamplingParams
from thunder.runtime.device_core import DeviceCore
from thunder.runtime.messages import Abort, Admit, KVHandoff, Sampling

pytestmark = pytest.mark.slow
GREEDY = Sampling(max_tokens=10, temperature=0.0)


@pytest.fixture(scope="module")
def engine() -> Iterator[LLMEngine]:
    yield LLMEngine(EngineConfig(dtype="float32", kv_cache_gib=0.1, num_threads=1))


@pytest.fixture
def cores(engine: LLMEngine) -> tuple[DeviceCore, DeviceCore]:
    # Two cores over one engine stand for two devices (request ids keep them apart); the KV still goes
    # through export -> pack -> wire form -> unpack -> import like between processes.
    return (DeviceCore(engine, replica="p", role="prefill", max_num_seqs=8),
            DeviceCore(engine, replica="d", role="decode", max_num_seqs=8))


def prefill(core: DeviceCore, rid: str, ids: list[int], kv_dtype: str) -> tuple[list[int], KVHandoff, int, int]:
    core.apply(Admit(request_id=rid, prompt_token_ids=ids, sampling=GREEDY, handoff_to="d-ref",
                     handoff_replica="d", kv_dtype=kv_dtype))
    out = core.step()
    assert out.report is not None and len(out.handoffs) == 1
    (delta,) = out.report.deltas
    assert delta.start == 0 and not delta.finished and out.report.prefill_tokens == len(ids)
    target, msg = out.handoffs[0]
    assert target == "d-ref"
    (record,) = out.report.handoffs
    return list(delta.token_ids), msg, record.wire_nbytes, record.fp16_nbytes


def decode_all(core: DeviceCore) -> list[int]:
    tokens: list[int] = []
    for _ in range(50):
        out = core.step()
        if out.report is None:
            break
        for d in out.report.deltas:
            assert d.start == 1 + len(tokens)
            tokens += d.token_ids
    return tokens


def test_fp32_handoff_continues_exactly_like_offline_greedy(engine: LLMEngine, cores) -> None:  # type: ignore[no-untyped-def]
    p, d = cores
    ids = engine.tokenizer.encode("The capital of France is")
    first, msg, wire, fp16 = prefill(p, "r-fp32", ids, "fp32")
    assert engine.stats().held == 0  # exported and released in the same step
    d.apply(msg)
    rest = decode_all(d)
    offline = engine.generate([ids], SamplingParams(max_tokens=10, temperature=0))[0]
    assert first + rest == list(offline.token_ids)
    assert wire == 2 * fp16  # fp32 is twice fp16


def test_int4_handoff_is_compressed_and_keeps_the_first_token(engine: LLMEngine, cores) -> None:  # type: ignore[no-untyped-def]
    p, d = cores
    ids = engine.tokenizer.encode("Once upon a time")
    first, msg, wire, fp16 = prefill(p, "r-int4", ids, "int4")
    assert fp16 / wire >= 3.5 and msg.header["dtype"] == "int4"
    d.apply(msg)
    rest = decode_all(d)
    offline = engine.generate([ids], SamplingParams(max_tokens=10, temperature=0))[0]
    assert first == list(offline.token_ids[:1]) and len(first + rest) == 10


def test_abort_frees_pages_and_late_handoff_is_dropped(engine: LLMEngine, cores) -> None:  # type: ignore[no-untyped-def]
    p, d = cores
    ids = engine.tokenizer.encode("1, 2, 3, 4,")
    _, msg, _, _ = prefill(p, "r-late", ids, "int4")
    d.apply(Abort(["r-late"]))  # the client left while the KV was on the wire
    d.apply(msg)
    assert d.num_requests == 0 and d.step().report is None
    d.apply(KVHandoff(**{f: getattr(msg, f) for f in msg.__struct_fields__} | {"request_id": "r-live"}))
    d.step()
    assert engine.stats().kv_pages_used > 0
    d.apply(Abort(["r-live"]))
    out = d.step()
    assert out.report is not None and out.report.deltas[-1].finish_reason == "abort"
    assert engine.stats().kv_pages_used == 0 and engine.stats().running == 0


def test_engine_rejection_becomes_a_finished_abort_delta(engine: LLMEngine, cores) -> None:  # type: ignore[no-untyped-def]
    _, d = cores
    d.apply(Admit(request_id="too-long", prompt_token_ids=[1] * (engine.max_model_len + 1), sampling=GREEDY))
    out = d.step()
    assert out.report is not None
    (delta,) = out.report.deltas
    assert (delta.request_id, delta.finished, delta.finish_reason) == ("too-long", True, "abort")
