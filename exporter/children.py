"""Child processes that die with the exporter, even when it is killed with SIGKILL and cannot clean up."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from typing import Final

_PR_SET_PDEATHSIG: Final = 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that asks Linux to send the child SIGTERM when the thread that started it ends (the
    exporter's reader thread, or the whole exporter after `kill -9`); None where that is not available."""
    libc = _libc()
    if libc is None:
        return None
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
