"""Keeping freed blocks for the next ones when a process reads a large input.

Each block read (READ_BYTES), its lower-cased copy and the pieces cut from it are a few hundred KiB. glibc hands
allocations that size back to the system when they are freed (an mmap of their own, or a trim of the heap's top),
and the next block's allocation touches fresh pages: 33,000 page faults and about 0.15 s of system time over a
146 MB log, about 7 % of `report`'s time. Told to keep them, the process allocates the same pages again."""

from __future__ import annotations

import sys
from typing import Final

KEEP_BYTES: Final = 64 << 20
"""Free memory at the heap's top that is kept rather than handed back (glibc's M_TRIM_THRESHOLD)."""
OWN_MAP_BYTES: Final = 8 << 20
"""Only allocations this large get an mmap of their own (M_MMAP_THRESHOLD); smaller ones come from the heap."""
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


def keep_freed_blocks() -> bool:
    """Asks the C library to keep freed memory for reuse; True when it agreed. Meant for a process that reads a
    large input and then exits (`report` and its workers): a long-running one would keep its peak forever."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # only here: 4 ms of start-up that small inputs do not pay

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to ask, or one without mallopt()
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES)) and bool(mallopt(_M_MMAP_THRESHOLD, OWN_MAP_BYTES))
