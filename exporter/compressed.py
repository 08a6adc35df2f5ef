"""Reading a log file that may be compressed: gzip, bzip2 and xz are told by their first bytes, not by name, so a
rotated log keeps its content whatever logrotate's `compressext` named it, and a plain file called .gz is read as
it is. The one place that knows the compressed formats, for `report`, `classify` and the follower alike."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import zlib
from typing import IO, Final, cast

COMPRESSED_SUFFIXES: Final = (".gz", ".bz2", ".xz")
"""The names logrotate gives compressed generations."""

READ_ERRORS: Final = (OSError, EOFError, lzma.LZMAError, zlib.error)
"""What reading a missing, unreadable, truncated or damaged (compressed) file raises."""


def damaged(err: BaseException) -> bool:
    """Whether an error reading a compressed file says its data is damaged (it will never read), as opposed to
    the disk or the system failing (an OSError with an errno: it may read later)."""
    return not isinstance(err, OSError) or err.errno is None


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
    def __init__(self, raw: IO[bytes]) -> None:
        gzip.GzipFile.__init__(self, fileobj=raw, mode="rb")


class _Bz2(_ClosesItsFile, bz2.BZ2File):
    def __init__(self, raw: IO[bytes]) -> None:
        bz2.BZ2File.__init__(self, raw, "rb")


class _Xz(_ClosesItsFile, lzma.LZMAFile):
    def __init__(self, raw: IO[bytes]) -> None:
        lzma.LZMAFile.__init__(self, raw, "rb")


_KINDS: Final[tuple[tuple[bytes, type[_Gzip | _Bz2 | _Xz]], ...]] = (
    (b"\x1f\x8b", _Gzip),
    (b"BZh", _Bz2),
    (b"\xfd7zXZ\x00", _Xz),
)
_MAGIC_BYTES: Final = max(len(magic) for magic, _ in _KINDS)

DECOMPRESSING: Final = (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)
"""The types of a decompressed stream (its offsets are not the file's)."""


def decompressing(raw: IO[bytes]) -> IO[bytes]:
    """`raw`, a file opened for reading at its start, decompressed when it starts like a gzip, bzip2 or xz stream.
    The returned stream owns `raw` and closes it. Anything but a regular file is returned as it is."""
    try:
        if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            return raw
        head = os.pread(raw.fileno(), _MAGIC_BYTES, 0)
        for magic, kind in _KINDS:
            if head.startswith(magic):
                stream = kind(raw)
                stream.raw_file = raw
                return cast(IO[bytes], stream)
    except BaseException:
        raw.close()
        raise
    return raw


def open_log(path: str) -> IO[bytes]:
    """The file's content as bytes, decompressed when it is compressed. Raises OSError when it cannot be opened."""
    return decompressing(open(path, "rb"))
