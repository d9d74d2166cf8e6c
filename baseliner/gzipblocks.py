"""A gzip writer that compresses on every core and writes the same bytes on any number of them.

The stream is cut into blocks of `BLOCK` bytes. Each block is deflated by zlib-ng on a worker
thread (it releases the GIL), primed with the last 32 KiB of the block before it, and ended with a
sync flush, so the blocks join into one deflate stream, as pigz makes it. The bytes therefore
depend on the input and the level only, never on the thread count or the time (mtime 0, no name).

Why not a library's threaded writer: ISA-L's (`isal.igzip_threaded`) is deterministic, but its
best level is 7 % larger than zlib's level 4 on a conda env; zlib-ng's own
`gzip_ng_threaded` is as small, but its bytes change with the thread count.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Protocol

from zlib_ng import zlib_ng


class Sink(Protocol):
    """Where the gzip stream goes: anything with a binary `write` (a file, a hashing writer)."""

    def write(self, data: bytes, /) -> int | None: ...


BLOCK = 1 << 20  # input bytes per deflate job
WINDOW = 1 << 15  # deflate's window: how much of the previous block primes the next
# magic, deflate, no flags, mtime 0, no extra flags, OS unknown (RFC 1952)
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _deflate(block: bytes, primer: bytes, level: int, last: bool) -> tuple[bytes, int]:
    """One block as raw deflate (ended by a sync flush, or the final block), and its crc32."""
    if primer:
        cobj = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15, 9, zlib_ng.Z_DEFAULT_STRATEGY, primer)
    else:
        cobj = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15, 9)
    data = cobj.compress(block) + cobj.flush(zlib_ng.Z_FINISH if last else zlib_ng.Z_SYNC_FLUSH)
    return data, zlib_ng.crc32(block)


class GzipBlocksWriter:
    """`write` bytes, then `close` (or use as a context manager); `out` stays open."""

    def __init__(self, out: Sink, level: int = 4, threads: int = -1) -> None:
        self.out, self.level = out, level
        self.workers = (os.cpu_count() or 1) if threads < 1 else threads
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="gzip")
        self.pending = bytearray()
        self.primer = b""
        self.jobs: deque[tuple[Future[tuple[bytes, int]], int]] = deque()
        self.crc, self.size, self.closed = 0, 0, False
        self.out.write(HEADER)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.pending += data
        if len(self.pending) > BLOCK:  # keep one block back: the last block must be marked last
            full = (len(self.pending) - 1) // BLOCK
            with memoryview(self.pending) as view:  # one copy per block, none for the rest
                for start in range(0, full * BLOCK, BLOCK):
                    self._submit(bytes(view[start : start + BLOCK]), last=False)
                rest = bytearray(view[full * BLOCK :])
            self.pending = rest
        return len(data)

    def _submit(self, block: bytes, last: bool) -> None:
        self.jobs.append((self.pool.submit(_deflate, block, self.primer, self.level, last), len(block)))
        self.primer = block[-WINDOW:]
        while len(self.jobs) > 2 * self.workers:
            self._drain_one()

    def _drain_one(self) -> None:
        job, length = self.jobs.popleft()
        data, crc = job.result()
        self.out.write(data)
        self.crc = zlib_ng.crc32_combine(self.crc, crc, length)
        self.size += length

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._submit(bytes(self.pending), last=True)
            self.pending = bytearray()
            while self.jobs:
                self._drain_one()
            self.out.write(struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))
        finally:
            self.pool.shutdown(cancel_futures=True)

    def __enter__(self) -> GzipBlocksWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:  # the output is being thrown away: stop the workers, write no trailer
            self.closed = True
            self.pool.shutdown(cancel_futures=True)
