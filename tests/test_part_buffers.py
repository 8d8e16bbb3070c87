"""Tests for spoolup._part_buffers: the process's part buffers under one byte budget."""

from __future__ import annotations

import gc

import psutil
import pytest

from spoolup._io import PART_BUDGET
from spoolup._part_buffers import PROCESS_BUFFERS, PartBuffers

PART = 1000
MiB = 1024 * 1024


def test_a_writes_own_buffer_is_never_refused() -> None:
    pool = PartBuffers(2 * PART)
    own = [pool.take(PART) for _ in range(5)]  # past the budget: still given
    assert all(len(b) == PART for b in own)
    assert pool.live == 5 * PART
    assert pool.spare(PART) is None  # but nothing more is lent
    assert pool.spared == 0


def test_spares_are_lent_only_under_the_budget() -> None:
    pool = PartBuffers(3 * PART)
    own = pool.take(PART)
    lent = [pool.spare(PART), pool.spare(PART)]
    assert all(b is not None and len(b) == PART for b in lent)
    assert pool.spare(PART) is None
    assert pool.live == pool.peak == 3 * PART
    assert pool.spared == 2
    del own, lent


def test_buffers_count_until_freed_even_if_never_given_back() -> None:
    pool = PartBuffers(2 * PART)
    own = pool.take(PART)
    lent = pool.spare(PART)
    assert pool.spare(PART) is None
    del lent  # a writer that forgot to give it back
    gc.collect()
    assert pool.live == PART
    assert pool.spare(PART) is not None
    del own


def test_given_back_buffers_are_reused() -> None:
    pool = PartBuffers(4 * PART)
    first = pool.take(PART)
    pool.give_back(first)
    assert pool.take(PART) is first
    pool.give_back(first)
    assert pool.spare(PART) is first
    assert pool.made == 1


def test_a_buffer_given_back_twice_is_kept_once() -> None:
    pool = PartBuffers(4 * PART)
    buffer = pool.take(PART)
    pool.give_back(buffer)
    pool.give_back(buffer)
    assert pool.take(PART) is buffer
    assert pool.take(PART) is not buffer


def test_cut_and_foreign_buffers_are_not_kept() -> None:
    pool = PartBuffers(4 * PART)
    buffer = pool.take(PART)
    del buffer[10:]
    pool.give_back(buffer)
    pool.give_back(bytearray(PART))
    assert pool.take(PART) is not buffer
    assert pool.made == 2


def test_idle_buffers_are_kept_up_to_a_quarter_of_the_budget() -> None:
    pool = PartBuffers(8 * PART)
    buffers = [pool.take(PART) for _ in range(4)]
    for buffer in buffers:
        pool.give_back(buffer)
    del buffers, buffer
    gc.collect()
    assert pool.live == 2 * PART  # two kept, two freed
    assert pool.idle == 2 * PART


def test_idle_buffers_of_an_unused_size_make_room_for_the_sizes_in_use() -> None:
    pool = PartBuffers(8 * PART)  # keeps 2 * PART idle
    old = pool.take(2 * PART)
    pool.give_back(old)
    del old
    part = pool.take(PART)
    pool.give_back(part)
    gc.collect()
    assert pool.live == PART  # the large one was dropped for it
    assert pool.take(PART) is part
    assert pool.made == 2


def test_no_idle_buffer_is_kept_past_the_budget() -> None:
    pool = PartBuffers(2 * PART)
    own = [pool.take(PART) for _ in range(3)]
    pool.give_back(own.pop())
    gc.collect()
    assert pool.live == 2 * PART


def test_buffers_of_another_size_are_not_mixed() -> None:
    pool = PartBuffers(4 * PART)
    small = pool.take(PART)
    pool.give_back(small)
    large = pool.take(2 * PART)
    assert len(large) == 2 * PART
    assert pool.take(PART) is small


def test_a_new_buffer_takes_memory_only_as_it_is_filled() -> None:
    # A part buffer zeroed when made is in memory whole from the start: a client that
    # sent 300 KiB and stalled would hold 8 MiB of the server's memory.
    pool = PartBuffers(0)
    me = psutil.Process()
    before = me.memory_info().rss
    buffers = [pool.take(8 * MiB) for _ in range(16)]
    for buffer in buffers:
        buffer[: 256 * 1024] = bytes(256 * 1024)
    grown = me.memory_info().rss - before
    assert pool.live == 16 * 8 * MiB
    assert grown < 16 * MiB  # 4 MiB filled; 128 MiB if every page were touched
    with pytest.raises(MemoryError):
        pool.take(2**62)
    assert pool.live == 16 * 8 * MiB
    del buffers, buffer


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        PartBuffers(-1)
    with pytest.raises(ValueError, match="negative"):
        PartBuffers().set_budget(-1)


def test_a_new_budget_lends_under_it_and_keeps_a_quarter_idle() -> None:
    pool = PartBuffers(8 * PART)
    kept = [pool.take(PART) for _ in range(2)]
    for buffer in kept:
        pool.give_back(buffer)
    pool.set_budget(4 * PART)
    assert (pool.budget, pool.idle) == (4 * PART, PART)
    del kept, buffer
    gc.collect()
    assert pool.live == PART  # one kept, the other dropped
    own = [pool.take(PART) for _ in range(4)]
    assert pool.spare(PART) is None
    del own


def test_the_process_pool_has_the_named_budget() -> None:
    assert PROCESS_BUFFERS.budget == PART_BUDGET
