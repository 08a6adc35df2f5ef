"""Opening a log file that may be compressed: gzip, bzip2 and xz are told by their first bytes, not by name."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from typing import IO, Final, cast

_KINDS: Final[tuple[tuple[bytes, Callable[[str], IO[bytes]]], ...]] = (
    (b"\x1f\x8b", lambda path: cast(IO[bytes], gzip.open(path, "rb"))),  # noqa: SIM115 - the caller closes it
    (b"BZh", lambda path: cast(IO[bytes], bz2.open(path, "rb"))),  # noqa: SIM115
    (b"\xfd7zXZ\x00", lambda path: cast(IO[bytes], lzma.open(path, "rb"))),  # noqa: SIM115
)
_MAGIC_BYTES: Final = max(len(magic) for magic, _ in _KINDS)

READ_ERRORS: Final = (OSError, EOFError, lzma.LZMAError)
"""What reading a missing, unreadable, truncated or damaged (compressed) file raises."""


def open_log(path: str) -> IO[bytes]:
    """The file's content as bytes, decompressed when it starts like a gzip, bzip2 or xz stream.

    A rotated log keeps its content whatever logrotate's `compressext` named it, and a plain file called
    .gz is read as it is. Raises OSError when the file cannot be opened."""
    with open(path, "rb") as raw:
        head = raw.read(_MAGIC_BYTES)
    for magic, opener in _KINDS:
        if head.startswith(magic):
            return opener(path)
    return open(path, "rb")
