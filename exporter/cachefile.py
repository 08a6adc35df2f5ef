"""The files the exporter keeps in a `__pycache__` folder beside its code (the bundled rules as parsed, the
compiled patterns): written whole or not at all, and only where the folder can be written."""

from __future__ import annotations

import contextlib
import os


def keep(path: str, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file renamed over it (a reader sees the old file or the new
    one, never a part), creating its folder; gives up silently when that cannot be done (a read-only install)."""
    temporary = f"{path}.{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
