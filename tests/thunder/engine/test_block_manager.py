"""BlockManager: ref-counted pages, allocation as a return value, hashed prefix cache with LRU eviction."""

from __future__ import annotations

from tests.thunder.engine.helpers import make_seq
from thunder.engine import BlockManager


def test_allocate_grows_pages_only_when_needed_and_free_returns_them() -> None:
    bm = BlockManager(num_pages=4, page_size=4, enable_prefix_caching=False)
    seq = make_seq("a", list(range(6)))
    assert bm.allocate(seq, 6)
    assert len(seq.page_ids) == 2 and bm.num_free_pages == 2
    seq.num_computed_tokens = 6
    assert bm.allocate(seq, 2)  # 8 tokens still fit in 2 pages
    assert len(seq.page_ids) == 2
    assert bm.allocate(seq, 3)  # 9 tokens need a third page
    assert len(seq.page_ids) == 3 and bm.num_used_pages == 3
    bm.free(seq)
    assert seq.page_ids == [] and bm.num_free_pages == 4


def test_allocation_failure_is_false_and_changes_nothing() -> None:
    bm = BlockManager(num_pages=2, page_size=4)
    seq = make_seq("a", list(range(12)))
    assert not bm.can_allocate(3)
    assert bm.allocate(seq, 12) is False
    assert seq.page_ids == [] and bm.num_free_pages == 2


def test_prefix_hit_shares_full_pages_and_keeps_one_token_to_compute() -> None:
    bm = BlockManager(num_pages=8, page_size=4)
    first = make_seq("a", list(range(10)))
    assert bm.allocate(first, 10)
    first.num_computed_tokens = 10
    bm.commit_full_pages(first)  # pages 0..1 full (8 tokens), the third holds 2
    second = make_seq("b", list(range(8)) + [99, 98, 97])
    assert bm.match_prefix(second) == 8
    assert second.page_ids == first.page_ids[:2]
    assert second.num_computed_tokens == 8
    # Exactly the prompt's full pages cached: the last page must still be computed for logits.
    exact = make_seq("c", list(range(8)))
    assert bm.match_prefix(exact) == 4
    # Shared pages survive one owner's free.
    bm.free(first)
    assert bm.num_used_pages == 2
    bm.free(second)
    bm.free(exact)
    assert bm.num_used_pages == 0


def test_freed_cached_pages_are_hit_until_evicted_by_reuse() -> None:
    bm = BlockManager(num_pages=3, page_size=2)
    a = make_seq("a", [1, 2, 3, 4, 5])
    assert bm.allocate(a, 5)
    a.num_computed_tokens = 5
    bm.commit_full_pages(a)
    bm.free(a)
    again = make_seq("a2", [1, 2, 3, 4, 5])
    assert bm.match_prefix(again) == 4  # both full pages come back from the free queue
    bm.free(again)
    hog = make_seq("hog", [7] * 6)
    assert bm.allocate(hog, 6)  # needs every page: the cached ones are evicted
    bm.free(hog)
    assert bm.match_prefix(make_seq("a3", [1, 2, 3, 4, 5])) == 0


def test_prefix_caching_off_never_hits() -> None:
    bm = BlockManager(num_pages=4, page_size=2, enable_prefix_caching=False)
    a = make_seq("a", [1, 2, 3])
    bm.allocate(a, 3)
    a.num_computed_tokens = 3
    bm.commit_full_pages(a)
    assert bm.match_prefix(make_seq("b", [1, 2, 3])) == 0
