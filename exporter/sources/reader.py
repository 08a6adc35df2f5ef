"""One open log file being read: plain (the live file, or a rotated one still written to) or decompressed."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import IO, Final

from exporter.compressed import COMPRESSED_SUFFIXES
from exporter.sources.identity import (
    FINGERPRINT_BYTES,
    FileId,
    fingerprint,
    head,
    identify,
    open_generation,
    open_regular,
)
from exporter.sources.lines import READ_BYTES, BlockSplitter
from exporter.sources.position import FilePosition

TAIL_BYTES: Final = 1 << 16
"""How much of what was read last is kept to tell a file truncated to a middle offset (its first bytes unchanged)
from one truncated to nothing: the lines still in the file up to where it was cut are not read again."""
TAIL_CHECK_BYTES: Final = 64
"""How many of the bytes just before the read offset are compared at each read to notice that a file was cut and
written again past the offset between two looks."""


@dataclass
class Reader:
    """One open file and how far it was read."""

    file: IO[bytes]
    ident: FileId
    splitter: BlockSplitter
    offset: int = 0
    """Bytes read so far (in the decompressed stream for a compressed file)."""
    consumed: int = 0
    """Offset just after the last delivered line (or dropped overlong tail): where a restart resumes."""
    plain: bool = True
    path: str = ""
    """Where the file was opened: the real path behind a symbolic link, or a rotated name."""
    last_growth: float = field(default_factory=time.monotonic)
    unchanged: tuple[int, int, int, int] | None = None
    """(device, inode, size, mtime) of the name when the last full look found nothing new: while a stat returns
    the same, nothing was written, truncated or renamed, and the look ends there."""
    tail: bytes = b""
    """The last TAIL_BYTES bytes read, ending at `offset` (plain files only)."""

    def position(self, draining: FilePosition | None = None) -> FilePosition:
        return FilePosition(self.ident, self.consumed, self.splitter.discarding, self.path, draining)

    def read_chunk(self) -> bytes:
        """The next bytes of the file (empty at its end), with the identity and the tail kept up to date."""
        data = self.file.read(READ_BYTES)
        if not data:
            return data
        self.offset += len(data)
        if self.plain:
            self.tail = data[-TAIL_BYTES:] if len(data) >= TAIL_BYTES else (self.tail + data)[-TAIL_BYTES:]
            if self.ident.fingerprint_len < FINGERPRINT_BYTES:
                self.ident = self.ident.grown(head(self.file))
        return data

    def continuous(self) -> bool:
        """Whether the plain file still holds what was read from it: its first bytes and the bytes just before the
        offset unchanged. False after a truncation, whether or not the file has grown again since."""
        fd = self.file.fileno()
        n = self.ident.fingerprint_len
        if n and fingerprint(os.pread(fd, n, 0)) != self.ident.fingerprint:
            return False
        k = min(len(self.tail), TAIL_CHECK_BYTES)
        return k == 0 or os.pread(fd, k, self.offset - k) == self.tail[-k:]

    def intact_until(self, size: int) -> int:
        """After a truncation, the offset up to which the file still holds, line for line, what was read from it:
        0 when it was emptied and written again (its first bytes changed: copytruncate)."""
        fd = self.file.fileno()
        n = self.ident.fingerprint_len
        if n == 0 or fingerprint(os.pread(fd, n, 0)) != self.ident.fingerprint:
            return 0
        base = self.offset - len(self.tail)
        same = _common_prefix(os.pread(fd, len(self.tail), base), self.tail)
        cut = self.tail.rfind(b"\n", 0, same)
        if cut >= 0:
            return base + cut + 1
        # Cut before the kept tail, its first bytes unchanged: the file holds what was read up to where it was cut,
        # taken to be its last line now (lines appended between the cut and this look cannot be told apart).
        return line_end_before(fd, min(size, base))

    def restart_at(self, offset: int, max_line_bytes: int) -> None:
        """Reads on from `offset`, a line boundary, forgetting any unterminated line held."""
        self.file.seek(offset)
        keep = offset - (self.offset - len(self.tail))
        self.tail = self.tail[:keep] if keep > 0 else b""
        self.offset = self.consumed = offset
        self.splitter = BlockSplitter(max_line_bytes)
        self.ident = identify(self.file)


def line_end_before(fd: int, end: int) -> int:
    """The offset just after the last newline before `end` in a plain file (looking back TAIL_BYTES at most); 0 when
    there is none."""
    window = os.pread(fd, min(end, TAIL_BYTES), end - min(end, TAIL_BYTES))
    newline = window.rfind(b"\n")
    return end - len(window) + newline + 1 if newline >= 0 else 0


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of two byte strings, by halving (C-speed comparisons)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def open_plain(path: str, offset: int, max_line_bytes: int, *, discarding: bool = False) -> Reader:
    """Opens a plain file at `offset`; raises NotRegularFile for anything but a regular file, without blocking (a
    FIFO opened for reading would wait for a writer)."""
    f = open_regular(path)
    fd = f.fileno()
    try:
        ident = identify(f)
        f.seek(offset)
        tail = os.pread(fd, min(offset, TAIL_BYTES), offset - min(offset, TAIL_BYTES)) if offset else b""
    except BaseException:
        f.close()
        raise
    splitter = BlockSplitter(max_line_bytes, discarding=discarding)
    return Reader(f, ident, splitter, offset, offset, True, os.path.realpath(path), tail=tail)


def open_saved(path: str, saved: FilePosition, max_line_bytes: int) -> Reader:
    """Opens the file a saved position was found in again, at its offset. Its identity is its own: a copy or a
    compressed generation has another inode than the file the position was taken in, which may be the live file
    now (copytruncate) or a new file that was given the inode since."""
    if path.endswith(COMPRESSED_SUFFIXES):
        st = os.stat(path)
        f = open_generation(path)
        f.seek(saved.offset)
        splitter = BlockSplitter(max_line_bytes, discarding=saved.discarding)
        ident = FileId(st.st_dev, st.st_ino, saved.ident.fingerprint, saved.ident.fingerprint_len)
        return Reader(f, ident, splitter, saved.offset, saved.offset, False, path)
    return open_plain(path, saved.offset, max_line_bytes, discarding=saved.discarding)
