"""The state file: where each source resumes and the counter values that belong to exactly those positions."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger(__name__)

STATE_VERSION: Final = 1
FLUSH_SECONDS: Final = 5.0
"""How often the daemon writes the state file (also at shutdown)."""


@dataclass(frozen=True)
class Snapshot:
    """Positions per source key and the metric values read up to them, taken under one lock."""

    positions: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


class StateFile:
    """A versioned JSON file replaced atomically: a reader sees the old or the new state, never a mix."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> Snapshot | None:
        """The saved snapshot; None when there is none or it cannot be used (then it is set aside, not lost)."""
        try:
            with open(self.path, "rb") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            self._set_aside(f"unreadable: {err}")
            return None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            self._set_aside(f"version {version!r}, expected {STATE_VERSION}")
            return None
        positions = data.get("positions")
        metrics = data.get("metrics")
        if not isinstance(positions, dict) or not isinstance(metrics, dict):
            self._set_aside("positions or metrics missing")
            return None
        return Snapshot(positions=positions, metrics=metrics)

    def _set_aside(self, why: str) -> None:
        aside = f"{self.path}.unusable-{int(time.time())}"
        log.error("state file %s is %s; moved to %s and starting without state", self.path, why, aside)
        try:
            os.replace(self.path, aside)
        except OSError as err:
            log.error("cannot move %s aside: %s", self.path, err)

    def save(self, snapshot: Snapshot) -> None:
        """Writes the snapshot: temp file in the same directory, fsync, rename, fsync of the directory.

        Raises OSError (disk full, read-only directory); the previous state file is then left as it was.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        payload = json.dumps(
            {
                "version": STATE_VERSION,
                "written_at": time.time(),
                "positions": snapshot.positions,
                "metrics": snapshot.metrics,
            },
            separators=(",", ":"),
        ).encode()
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
