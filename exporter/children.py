"""Child processes that die with the exporter, even when it is killed with SIGKILL and cannot clean up."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Final

_PR_SET_PDEATHSIG: Final = 1


def _prctl() -> Any | None:
    """libc's prctl(): looked up among the symbols the interpreter already has (it is linked with libc), without
    ctypes.util.find_library, which imports a dozen modules and runs ldconfig (a tenth of `report --jobs`'s
    start); ctypes is imported only here."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    for name in (None, "libc.so.6"):
        try:
            return ctypes.CDLL(name, use_errno=True).prctl
        except (OSError, AttributeError):
            continue
    return None


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that asks Linux to send the child SIGTERM when the thread that started it ends (the
    exporter's reader thread, or the whole exporter after `kill -9`); None where that is not available."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
