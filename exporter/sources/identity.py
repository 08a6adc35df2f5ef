"""What makes a log file the same file: its device and inode while it exists, and its first bytes, which survive a
rename, a copy and compression (a rotated `mail.log.2.gz` holds the bytes `mail.log` began with)."""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import io
import lzma
import os
import stat
import zlib
from dataclasses import dataclass
from typing import IO, Final, cast

FINGERPRINT_BYTES: Final = 256
COMPRESSED: Final = (".gz", ".bz2", ".xz")
UNREADABLE: Final = (OSError, EOFError, lzma.LZMAError, zlib.error)
"""What reading a rotated file can raise: a truncated or corrupt compressed file raises more than OSError."""


def damaged(err: BaseException) -> bool:
    """Whether an error reading a compressed file says its data is damaged (it will never read), as opposed to
    the disk or the system failing (an OSError with an errno: it may read later)."""
    return not isinstance(err, OSError) or err.errno is None


def fingerprint(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


@dataclass(frozen=True, slots=True)
class FileId:
    """Which file a position belongs to: where it lives now, and a digest of its first `fingerprint_len` bytes."""

    dev: int
    ino: int
    fingerprint: str
    fingerprint_len: int

    def same_inode(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) == (self.dev, self.ino)

    def grown(self, head: bytes) -> FileId:
        """The same file with a longer fingerprint, once more of its first bytes exist."""
        return FileId(self.dev, self.ino, fingerprint(head), len(head))


class NotRegularFile(OSError):
    """A log path names a FIFO, a device, a socket or a directory: reading it could block or never end."""


def open_regular(path: str) -> IO[bytes]:
    """A regular file opened for reading, unbuffered; raises NotRegularFile for anything else, without blocking (a
    FIFO opened for reading would wait for a writer)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


class _ClosesItsFile(io.BufferedIOBase):
    """A decompressing reader that closes the file it reads when it is closed (given a file object, gzip, bz2 and
    lzma leave it open)."""

    raw_file: IO[bytes] | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.raw_file is not None:
                self.raw_file.close()


class _Gzip(_ClosesItsFile, gzip.GzipFile):
    pass


class _Bz2(_ClosesItsFile, bz2.BZ2File):
    pass


class _Xz(_ClosesItsFile, lzma.LZMAFile):
    pass


def open_generation(path: str) -> IO[bytes]:
    """A log file or a rotated generation of it for reading, decompressed when its name says it is compressed.
    Raises NotRegularFile for a FIFO or device named like a generation: it is never opened for reading."""
    raw = open_regular(path)
    decompressed: _ClosesItsFile
    try:
        if path.endswith(".gz"):
            decompressed = _Gzip(fileobj=raw, mode="rb")
        elif path.endswith(".bz2"):
            decompressed = _Bz2(raw, "rb")
        elif path.endswith(".xz"):
            decompressed = _Xz(raw, "rb")
        else:
            return raw
    except BaseException:
        raw.close()
        raise
    decompressed.raw_file = raw
    return cast(IO[bytes], decompressed)


def head(f: IO[bytes], n: int = FINGERPRINT_BYTES) -> bytes:
    """The first `n` bytes of an open file: pread for a plain file (its offset stays), a read from the start for a
    decompressed stream. The one way the follower reads a file's first bytes."""
    try:
        fd = f.fileno()
    except (OSError, ValueError, AttributeError):
        fd = -1
    if fd >= 0 and not isinstance(f, gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile):
        return os.pread(fd, n, 0)
    f.seek(0)
    return f.read(n)


def identify(f: IO[bytes]) -> FileId:
    """The identity of an open plain file."""
    st = os.fstat(f.fileno())
    first = head(f)
    return FileId(st.st_dev, st.st_ino, fingerprint(first), len(first))


def matches(path: str, ident: FileId) -> bool:
    """Whether the file at `path` begins with the bytes `ident` was taken from (False when it cannot be read, and
    for an empty fingerprint, which matches every file)."""
    if ident.fingerprint_len == 0:
        return False
    try:
        with open_generation(path) as f:
            first = head(f, ident.fingerprint_len)
    except UNREADABLE:
        return False
    return len(first) == ident.fingerprint_len and fingerprint(first) == ident.fingerprint


def is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
