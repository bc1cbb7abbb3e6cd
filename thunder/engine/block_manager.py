"""`BlockManager`: ref-counted KV pages with hashed prefix caching over full pages.

Free pages wait in an LRU queue. A full page whose KV is computed is registered under a hash-chain key
``(parent key, its page_size tokens)``; when its last user frees it, it stays in the queue *and* in the
cache, so a later request with the same prefix takes it back (a hit) until it is evicted by reuse.
Allocation failure is a return value (``False``), never an exception.
"""

from __future__ import annotations

from collections import OrderedDict

from thunder.engine.sequence import Sequence

__all__ = ["BlockManager"]


class BlockManager:
    def __init__(self, *, num_pages: int, page_size: int, enable_prefix_caching: bool = True) -> None:
        self.num_pages = num_pages
        self.page_size = page_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref = [0] * num_pages
        self._free: OrderedDict[int, None] = OrderedDict((p, None) for p in range(num_pages))
        self._page_of_key: dict[int, int] = {}
        self._key_of_page: dict[int, int] = {}
        self.prefix_hit_tokens = 0
        self.prefix_query_tokens = 0

    @property
    def num_free_pages(self) -> int:
        return len(self._free)

    @property
    def num_used_pages(self) -> int:
        return self.num_pages - len(self._free)

    def pages_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.page_size)

    def can_allocate(self, num_pages: int) -> bool:
        return num_pages <= len(self._free)

    def _chain_key(self, parent: int | None, tokens: list[int]) -> int:
        return hash((parent, tuple(tokens)))

    def match_prefix(self, seq: Sequence) -> int:
        """Attach cached full pages of ``seq``'s leading tokens; returns the number of tokens reused.

        Only for a sequence with no pages. At least one token is always left to compute (its logits are
        needed to sample).
        """
        if not self.enable_prefix_caching or seq.page_ids:
            return 0
        s = self.page_size
        max_pages = (seq.num_tokens - 1) // s
        parent: int | None = None
        for i in range(max_pages):
            key = self._chain_key(parent, seq.token_ids[i * s : (i + 1) * s])
            page = self._page_of_key.get(key)
            if page is None:
                break
            self._take(page)
            seq.page_ids.append(page)
            seq.page_hashes.append(key)
            parent = key
        hit = len(seq.page_ids) * s
        seq.num_computed_tokens = hit
        seq.num_cached_tokens = hit
        self.prefix_hit_tokens += hit
        self.prefix_query_tokens += seq.num_tokens
        return hit

    def _take(self, page: int) -> None:
        if self._ref[page] == 0:
            del self._free[page]
        self._ref[page] += 1

    def allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Give ``seq`` pages for ``num_computed_tokens + num_new_tokens`` tokens; False if they don't fit."""
        need = self.pages_for(seq.num_computed_tokens + num_new_tokens) - len(seq.page_ids)
        if need <= 0:
            return True
        if need > len(self._free):
            return False
        for _ in range(need):
            page, _ = self._free.popitem(last=False)
            key = self._key_of_page.pop(page, None)
            if key is not None and self._page_of_key.get(key) == page:
                del self._page_of_key[key]  # evicted from the prefix cache by reuse
            self._ref[page] = 1
            seq.page_ids.append(page)
        return True

    def free(self, seq: Sequence) -> None:
        """Drop ``seq``'s references; pages reaching zero return to the LRU queue (tail pages first)."""
        for page in reversed(seq.page_ids):
            self._ref[page] -= 1
            if self._ref[page] == 0:
                self._free[page] = None
        seq.page_ids = []
        seq.page_hashes = []

    def commit_full_pages(self, seq: Sequence) -> None:
        """Register ``seq``'s newly completed full pages (KV computed) in the prefix cache."""
        if not self.enable_prefix_caching:
            return
        s = self.page_size
        full = min(seq.num_computed_tokens // s, len(seq.page_ids))
        for i in range(len(seq.page_hashes), full):
            parent = seq.page_hashes[-1] if seq.page_hashes else None
            key = self._chain_key(parent, seq.token_ids[i * s : (i + 1) * s])
            seq.page_hashes.append(key)
            page = seq.page_ids[i]
            if key not in self._page_of_key:
                self._page_of_key[key] = page
                self._key_of_page[page] = key

    def reset_prefix_cache(self) -> None:
        self._page_of_key.clear()
        self._key_of_page.clear()
