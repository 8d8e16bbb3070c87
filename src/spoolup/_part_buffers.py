"""Part buffers of multipart uploads: one pool for the process, under one byte budget.

A multipart upload to S3 is sent in parts of at least 5 MiB, each gathered in memory
before it is sent. Every writer of parts (the streamed writes of
:class:`~spoolup.storage.s3.S3Storage`, the tus store's parts) takes its buffers from
:data:`PROCESS_BUFFERS`, which

- **reuses them**: a buffer whose part was sent goes back for the next part (a few are
  kept while idle) rather than allocating and zeroing 8 MiB per part from many threads,
  which leaves the heap fragmented and the process larger;
- **bounds them**: a write gets one buffer of its own (:meth:`PartBuffers.take`: never
  refused and never waited for, so a write always makes progress), and borrows more
  (:meth:`PartBuffers.spare`, to send parts in the background while the next one
  fills) only while the process holds less than :data:`~spoolup._io.PART_BUDGET`
  bytes of parts. A write refused a spare sends its part and waits, in its own thread,
  for one of its own buffers to come back: backpressure. A write never waits for
  another write, so no number of writes can deadlock (a write whose thread is blocked
  waiting for a buffer another blocked thread holds is what a budget every write must
  wait on would risk: the event loop's executor has a handful of threads).

So the part buffers alive in a process stay under the budget plus one part per write
in progress. A new buffer's memory is not touched when it is made (its pages are mapped
as they are filled), so a write that receives slowly, or stalls after a few bytes,
holds about what it received, not a whole part: a client cannot make the server commit
8 MiB by sending 300 KiB. Buffers kept for reuse are filled already, but at most
``idle`` bytes of them. A buffer counts as long as it is alive, wherever it is (filling, in
flight, idle, or dropped by a writer that was never closed): it stops counting when it
is freed, so a forgotten buffer cannot shrink the budget for good.
"""

from __future__ import annotations

import ctypes
import threading
import weakref

from spoolup._io import PART_BUDGET

__all__ = ["PROCESS_BUFFERS", "PartBuffers"]


# Grows a bytearray without zeroing it (``bytearray(n)`` writes n zeros, so every page
# of a part is in memory from the start); raises MemoryError when it cannot.
_resize = ctypes.pythonapi.PyByteArray_Resize
_resize.argtypes = [ctypes.py_object, ctypes.c_ssize_t]
_resize.restype = ctypes.c_int


class _Buffer(bytearray):
    """A part buffer that can be watched (a plain bytearray takes no weak reference)."""

    __slots__ = ("__weakref__", "size")

    size: int


class PartBuffers:
    """Part buffers lent to writers, and counted until they are freed; see the module.

    Args:
        budget: bytes of buffers alive past which :meth:`spare` refuses.
        idle: bytes of returned buffers kept for reuse (a quarter of the budget).

    ``live`` is the bytes of buffers alive now, ``peak`` the most there ever were,
    ``made`` the buffers allocated and ``spared`` the ones lent by :meth:`spare`.
    """

    def __init__(self, budget: int = PART_BUDGET, *, idle: int | None = None) -> None:
        if budget < 0:
            raise ValueError(f"budget must not be negative, not {budget}")
        self.budget = budget
        self.idle = budget // 4 if idle is None else idle
        # Reentrant: a buffer freed while the lock is held (by this thread) counts down.
        self._lock = threading.RLock()
        self._kept: list[_Buffer] = []
        self._kept_bytes = 0
        self.live = 0
        self.peak = 0
        self.made = 0
        self.spared = 0

    def set_budget(self, budget: int) -> None:
        """Lend spares under ``budget`` bytes from now on (``spoolup serve --part-budget``).

        Keeps a quarter of it idle for reuse, as a new pool would; kept buffers past
        that are dropped.
        """
        if budget < 0:
            raise ValueError(f"budget must not be negative, not {budget}")
        with self._lock:
            self.budget, self.idle = budget, budget // 4
            while self._kept_bytes > self.idle:
                self._kept_bytes -= self._kept.pop().size

    def __repr__(self) -> str:
        return f"PartBuffers(budget={self.budget}, live={self.live}, peak={self.peak})"

    def take(self, size: int) -> bytearray:
        """A buffer of ``size`` bytes for a write's own part, at once, whatever the budget.

        Its content is left over from an earlier part: write before reading.
        """
        with self._lock:
            buffer = self._reuse(size)
            if buffer is not None:
                return buffer
            self._count(size)
        return self._make(size)

    def spare(self, size: int) -> bytearray | None:
        """A further buffer of ``size`` bytes if the budget allows one now, else ``None``."""
        with self._lock:
            buffer = self._reuse(size)
            if buffer is None:
                if self.live + size > self.budget:
                    return None
                self._count(size)
            self.spared += 1
        return buffer if buffer is not None else self._make(size)

    def give_back(self, buffer: bytes | bytearray) -> None:
        """Return a buffer no one reads any more (its part was sent), to reuse it.

        A buffer from elsewhere, or cut to another size, is left to be freed. The
        buffers kept longest make room for it: idle buffers of a part size no write
        uses any more must not keep the sizes in use from being reused.
        """
        if not isinstance(buffer, _Buffer) or len(buffer) != buffer.size:
            return
        with self._lock:
            if (
                buffer.size <= self.idle
                and self.live <= self.budget
                and not any(kept is buffer for kept in self._kept)
            ):
                self._kept.append(buffer)
                self._kept_bytes += buffer.size
                while self._kept_bytes > self.idle:
                    self._kept_bytes -= self._kept.pop(0).size

    def _reuse(self, size: int) -> _Buffer | None:
        for i in range(len(self._kept) - 1, -1, -1):
            if self._kept[i].size == size:
                self._kept_bytes -= size
                return self._kept.pop(i)
        return None

    def _count(self, size: int) -> None:
        self.live += size
        self.peak = max(self.peak, self.live)
        self.made += 1

    def _make(self, size: int) -> _Buffer:
        try:
            buffer = _Buffer()
            _resize(buffer, size)
        except BaseException:
            self._freed(size)
            raise
        buffer.size = size
        watch = weakref.finalize(buffer, self._freed, size)
        watch.atexit = False
        return buffer

    def _freed(self, size: int) -> None:
        with self._lock:
            self.live -= size


PROCESS_BUFFERS = PartBuffers()
"""The part buffers of the process (budget :data:`~spoolup._io.PART_BUDGET`)."""
