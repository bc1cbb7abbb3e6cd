"""Scheduler: chunked prefill under a token budget, FIFO admission, preemption by recompute."""

from __future__ import annotations

from tests.thunder.engine.helpers import make_seq
from thunder.engine import BlockManager, Scheduler, Sequence, SequenceStatus


def run_step(sched: Scheduler) -> dict[str, int]:
    """Schedule one step and pretend the model ran it (each finished prefill/decode samples one token)."""
    batch = sched.schedule()
    for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
        seq.num_computed_tokens += n
        sched.block_manager.commit_full_pages(seq)
        if seq.num_computed_tokens == seq.num_tokens:
            seq.token_ids.append(0)
    return {s.request_id: n for s, n in zip(batch.seqs, batch.num_new_tokens, strict=True)}


def make(num_pages: int = 64, page_size: int = 4, budget: int = 16, max_seqs: int = 8) -> Scheduler:
    bm = BlockManager(num_pages=num_pages, page_size=page_size, enable_prefix_caching=False)
    return Scheduler(bm, max_num_seqs=max_seqs, max_num_batched_tokens=budget)


def test_chunked_prefill_splits_a_long_prompt_across_steps_and_decodes_ride_along() -> None:
    sched = make(budget=16)
    short, long = make_seq("short", [1] * 3), make_seq("long", [2] * 40)
    sched.add(short)
    sched.add(long)
    assert run_step(sched) == {"short": 3, "long": 13}
    assert run_step(sched) == {"short": 1, "long": 15}  # decode + next chunk share the budget
    assert run_step(sched) == {"short": 1, "long": 12}  # last chunk (40 = 13 + 15 + 12)
    assert run_step(sched) == {"short": 1, "long": 1}  # both decoding


def test_fifo_admission_never_lets_a_later_request_skip_ahead() -> None:
    sched = make(num_pages=4, page_size=4, budget=64)
    big, small = make_seq("big", [1] * 20), make_seq("small", [2] * 2)  # big needs 5 pages: never now
    first = make_seq("first", [3] * 8)
    sched.add(first)
    sched.add(big)
    sched.add(small)
    assert run_step(sched) == {"first": 8}
    assert [s.request_id for s in sched.waiting] == ["big", "small"]


def test_max_num_seqs_bounds_the_running_set() -> None:
    sched = make(max_seqs=2)
    for i in range(3):
        sched.add(make_seq(f"r{i}", [i] * 2))
    assert set(run_step(sched)) == {"r0", "r1"}
    assert len(sched.waiting) == 1


def test_preemption_recomputes_the_newest_sequence_and_requeues_it_first() -> None:
    # 4 pages of 2 tokens: two 4-token prompts take 2 pages each, then both need a third.
    sched = make(num_pages=4, page_size=2, budget=64)
    old, new, later = make_seq("old", [1, 2, 3, 8]), make_seq("new", [4, 5, 6, 9]), make_seq("later", [7])
    for s in (old, new, later):
        sched.add(s)
    assert run_step(sched) == {"old": 4, "new": 4}  # 5 tokens each after sampling
    assert run_step(sched) == {"old": 1}  # "old" needs page 3: "new" (latest) is preempted
    assert new.status is SequenceStatus.WAITING and new.page_ids == [] and new.num_computed_tokens == 0
    assert [s.request_id for s in sched.waiting] == ["new", "later"]  # preempted goes to the front
    assert sched.num_preemptions == 1
    sched.remove(old)  # old finishes: room again
    step = run_step(sched)
    assert step["new"] == 5  # recompute prompt + the token it had generated
    assert new.token_ids == [4, 5, 6, 9, 0, 0]


def test_a_sequence_preempting_itself_leaves_the_step_empty() -> None:
    sched = make(num_pages=2, page_size=2, budget=64)
    only: Sequence = make_seq("only", [1, 2, 3, 4])
    sched.add(only)
    run_step(sched)  # 4 tokens computed in 2 pages, a fifth sampled
    batch = sched.schedule()  # the fifth token needs a third page that doesn't exist
    assert batch.seqs == [] and batch.preempted == [only]
