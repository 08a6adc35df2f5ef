"""What makes a log file the same file: its device and inode while it exists, and its first bytes, which survive a
rename, a copy and compression (a rotated `mail.log.2.gz` holds the bytes `mail.log` began with)."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from typing import IO, Final

from exporter.compressed import DECOMPRESSING, READ_ERRORS, decompressing

FINGERPRINT_BYTES: Final = 256


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


ABSENT: Final = FileId(0, 0, fingerprint(b""), 0)
"""The identity recorded for a log that did not exist (or could not be opened) when following began: no file has
it, so a restart reads the log from its start once it appears, as the exporter that began would have."""


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


def open_generation(path: str) -> IO[bytes]:
    """A log file or a rotated generation of it for reading, decompressed when it is compressed. Raises
    NotRegularFile for a FIFO or device named like a generation: it is never opened for reading."""
    return decompressing(open_regular(path))


def head(f: IO[bytes], n: int = FINGERPRINT_BYTES) -> bytes:
    """The first `n` bytes of an open file: pread for a plain file (its offset stays), a read from the start for a
    decompressed stream. The one way the follower reads a file's first bytes."""
    try:
        fd = f.fileno()
    except (OSError, ValueError, AttributeError):
        fd = -1
    if fd >= 0 and not isinstance(f, DECOMPRESSING):
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
    except READ_ERRORS:
        return False
    return len(first) == ident.fingerprint_len and fingerprint(first) == ident.fingerprint


def is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
