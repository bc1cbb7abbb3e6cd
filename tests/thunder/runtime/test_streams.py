"""StreamTable: deltas from two devices are put back in order; closed streams drop late output."""

from __future__ import annotations

import pytest

from thunder.runtime.messages import Delta
from thunder.runtime.streams import StreamFailed, StreamTable


def delta(start: int, tokens: list[int], *, finished: bool = False, rid: str = "r") -> Delta:
    text = "".join(chr(96 + t) for t in tokens)
    return Delta(rid, start, tokens, text, finished, "length" if finished else None, 3)


async def test_out_of_order_deltas_are_reordered_and_counted() -> None:
    table = StreamTable()
    queue = table.open("r")
    assert not table.deliver(delta(1, [2, 3]))  # decode device overtook the prefill's first token
    assert queue.empty()
    assert table.deliver(delta(3, [4], finished=True)) is False
    assert table.deliver(delta(0, [1])) is True  # releases the two waiting ones
    got = [queue.get_nowait() for _ in range(3)]
    assert [d.token_ids for d in got] == [[1], [2, 3], [4]]
    assert [d.num_output_tokens for d in got] == [1, 3, 4]
    assert "".join(d.text for d in got) == "abcd"
    assert got[-1].finished and got[-1].finish_reason == "length"
    assert "r" not in table and len(table) == 0


async def test_closed_stream_drops_late_output_and_fail_reports() -> None:
    table = StreamTable()
    table.open("a")
    assert table.close("a")
    assert not table.deliver(delta(0, [1], rid="a"))
    queue = table.open("b")
    table.fail("b", "replica g1 is unavailable")
    item = queue.get_nowait()
    assert isinstance(item, StreamFailed) and "g1" in str(item)
    with pytest.raises(ValueError, match="already streaming"):
        table.open("c")
        table.open("c")
