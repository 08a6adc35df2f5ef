"""The state file: where each source resumes, the counter values that belong to exactly those positions, and the
analysers' join memory read up to them.

Two generations are kept: each write replaces `state.json` atomically after moving the previous one to
`state.json.1`, and each carries a sequence number. A damaged newest one falls back to the previous good pair of
positions and counters, so nothing is lost and nothing counted twice. Everything is checked before it is used; a file that does not validate is set aside
and logged, never trusted and never fatal. An exclusive lock held for the life of the process keeps a second
exporter off the same file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from exporter.sources.identity import open_regular
from exporter.sources.position import Position, position_from_json

log = logging.getLogger(__name__)

STATE_VERSION: Final = 2
READABLE_VERSIONS: Final = (1, 2)
"""Version 1 (positions without their kind, no join memory) is read and upgraded."""
FLUSH_SECONDS: Final = 5.0
"""How often the daemon writes the state file while something changes (also at shutdown)."""
MAX_STATE_BYTES: Final = 64 << 20
"""A state file is a few hundred kilobytes at most; a larger one is not ours."""


class StateLocked(Exception):
    """Another process holds the state file."""


@dataclass(frozen=True)
class Snapshot:
    """Positions per source, the metric values read up to them and each source's join memory at that point,
    taken together."""

    positions: dict[str, Position] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)
    write_errors: int = 0
    """Failed writes of the state file so far (gmail_exporter_state_write_errors_total)."""
    google_domains: Any = None
    """Recipient domains seen delivered to Google (the queue reader's GoogleDomains.state()); checked by its owner,
    and a bad value there costs only itself, not the positions and counters."""


Validator = Callable[[Snapshot], None]
"""Raises ValueError when the metrics or memory of a snapshot cannot be restored."""


def _upgrade_v1_position(data: Any) -> Any:
    if not isinstance(data, dict) or "kind" in data:
        return data
    if set(data) == {"cursor"}:
        return {"kind": "journal", **data}
    upgraded = {"kind": "file", **data}
    if isinstance(data.get("draining"), dict):
        upgraded["draining"] = _upgrade_v1_position(data["draining"])
    elif "draining" in upgraded and upgraded["draining"] is None:
        del upgraded["draining"]
    return upgraded


def parse(data: Any) -> tuple[int, Snapshot]:
    """The sequence number and snapshot a state file's JSON holds; raises ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping at the top, got {type(data).__name__}")
    version = data.get("version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"version {version!r}, expected one of {READABLE_VERSIONS}")
    sequence = data.get("sequence", 0)
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        raise ValueError(f"sequence: expected a whole number >= 0, got {sequence!r}")
    raw_positions = data.get("positions")
    metrics = data.get("metrics")
    memory = data.get("memory", {})
    if not isinstance(raw_positions, dict):
        raise ValueError(f"positions: expected a mapping, got {type(raw_positions).__name__}")
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics: expected a mapping, got {type(metrics).__name__}")
    if not isinstance(memory, dict) or not all(isinstance(v, dict) for v in memory.values()):
        raise ValueError("memory: expected a mapping of mappings")
    write_errors = data.get("state_write_errors", metrics.get("state_write_errors", 0) if version == 1 else 0)
    if isinstance(write_errors, float) and write_errors.is_integer():
        write_errors = int(write_errors)
    if not isinstance(write_errors, int) or isinstance(write_errors, bool) or write_errors < 0:
        raise ValueError(f"state_write_errors: expected a whole number >= 0, got {str(write_errors)[:40]!r}")
    positions: dict[str, Position] = {}
    for key, raw in raw_positions.items():
        if version == 1:
            raw = _upgrade_v1_position(raw)
        positions[key] = position_from_json(raw, f"positions[{key!r}]")
    return sequence, Snapshot(
        positions=positions,
        metrics=metrics,
        memory=memory,
        write_errors=write_errors,
        google_domains=data.get("google_domains"),
    )


def _read_regular(path: str) -> bytes:
    """The contents of a state file; raises OSError for a FIFO, device or directory (never opened for reading, a
    FIFO would block) and ValueError for a file larger than any state file, both without reading them."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_STATE_BYTES:
            raise ValueError(f"{size} bytes, larger than {MAX_STATE_BYTES}")
        return f.read(MAX_STATE_BYTES + 1)


class StateFile:
    """The newest state and the one before it, each replaced atomically."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.generations = (path, f"{path}.1")
        self._sequence = 0
        self._lock_fd: int | None = None
        self._trimmed = False

    def owns(self, path: str) -> bool:
        """Whether `path` is one of this state file's own files (its generations, its lock, one set aside, the
        temporary file of a write): never a log, whatever a glob matches."""
        mine = os.path.realpath(self.path)
        real = os.path.realpath(path)
        directory, name = os.path.split(real)
        if real == mine:
            return True
        if directory != os.path.dirname(mine):
            return False
        return name.startswith(f"{os.path.basename(mine)}.") or (
            name.startswith(".state-") and name.endswith(".tmp")
        )

    def lock(self) -> None:
        """Takes the exclusive lock for the life of the process; raises StateLocked when another process has it.
        A state directory that cannot hold a lock file (read-only) is warned about and used unlocked."""
        directory = os.path.dirname(os.path.abspath(self.path))
        lock_path = f"{self.path}.lock"
        try:
            os.makedirs(directory, exist_ok=True)
            # Held read-only: a descriptor open for writing would keep the state filesystem from being remounted.
            # Non-blocking: a FIFO at the lock path would otherwise wait for a writer for ever.
            fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        except OSError as err:
            try:
                fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:
                log.warning("cannot create the lock file %s (%s): two exporters on this state file would not be "
                            "noticed", lock_path, err.strerror or err)  # fmt: skip
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 32, 0).decode().strip()
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" (process {holder})" if holder.isdigit() else ""
                raise StateLocked(
                    f"state file {self.path} is in use by another exporter{who}; give each exporter its own "
                    "--state.file"
                ) from err
            log.warning("cannot lock %s (%s); going on unlocked", lock_path, err.strerror or err)
            return
        with contextlib.suppress(OSError):  # who holds the lock, for the message of the next one to try
            pid_fd = os.open(
                lock_path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            )
            try:
                os.write(pid_fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(pid_fd)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self, validate: Validator) -> Snapshot | None:
        """The newest generation that reads and validates; None when there is none. Every generation that cannot
        be used is set aside (renamed, not deleted) and logged once."""
        found: list[tuple[int, str, Snapshot]] = []
        for path in self.generations:
            try:
                raw = _read_regular(path)
                sequence, snapshot = parse(json.loads(raw))
                validate(snapshot)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, RecursionError) as err:
                self._set_aside(path, str(err))
                continue
            found.append((sequence, path, snapshot))
        if not found:
            return None
        found.sort(key=lambda item: item[0], reverse=True)
        sequence, path, snapshot = found[0]
        if path != self.path:
            log.warning("resuming from the previous state generation %s", path)
        self._sequence = sequence
        return snapshot

    def _set_aside(self, path: str, why: str) -> None:
        aside = f"{path}.unusable-{int(time.time())}"
        try:
            os.replace(path, aside)
        except OSError as err:
            log.error(
                "state file %s is unusable (%s) and cannot be moved aside (%s); not using it",
                path,
                why,
                err.strerror or err,
            )
            return
        log.error("state file %s is unusable (%s); moved to %s", path, why, aside)

    def _payload(self, snapshot: Snapshot, sequence: int) -> bytes:
        """The JSON of a snapshot, never larger than load() accepts: join memory grows with the number of busy logs
        (about 1.3 MB each with sender domains on), so past MAX_STATE_BYTES the largest memories are left out (a
        restart then misses those logs' joins) rather than writing a file the next start must set aside whole."""

        def encode(memory: dict[str, dict[str, Any]]) -> bytes:
            return json.dumps(
                {
                    "version": STATE_VERSION,
                    "sequence": sequence,
                    "written_at": time.time(),
                    "positions": {key: p.to_json() for key, p in snapshot.positions.items()},
                    "metrics": snapshot.metrics,
                    "memory": memory,
                    "state_write_errors": snapshot.write_errors,
                    "google_domains": snapshot.google_domains,
                },
                separators=(",", ":"),
            ).encode()

        payload = encode(snapshot.memory)
        if len(payload) <= MAX_STATE_BYTES:
            return payload
        sizes = sorted((len(json.dumps(m, separators=(",", ":"))), k) for k, m in snapshot.memory.items())
        room = MAX_STATE_BYTES - len(encode({})) - 64 * len(sizes)
        kept: dict[str, dict[str, Any]] = {}
        for size, key in sizes:
            if size > room:
                break
            kept[key] = snapshot.memory[key]
            room -= size
        payload = encode(kept)
        if len(payload) > MAX_STATE_BYTES:
            raise OSError(
                errno.EFBIG, f"the state is larger than {MAX_STATE_BYTES} bytes even without join memory"
            )
        if not self._trimmed:
            log.warning("the join memory of %d of %d sources is left out of the state file to keep it under %d "
                        "bytes; after a restart their earlier lines are not joined", len(sizes) - len(kept),
                        len(sizes), MAX_STATE_BYTES)  # fmt: skip
            self._trimmed = True
        return payload

    def save(self, snapshot: Snapshot) -> None:
        """Writes the snapshot: temp file in the same directory, fsync, the newest state renamed to the previous
        generation, the temp file renamed to the newest, fsync of the directory. Raises OSError (disk full,
        read-only directory); the state files are then left as they were."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        sequence = self._sequence + 1
        payload = self._payload(snapshot, sequence)
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, self.generations[1])
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
        self._sequence = sequence


class Checkpointer:
    """The one owner of state writes: what changed since the last write, when to write, and write failures.

    Sources report changes through `changed()` (under the ingest lock); the daemon's loop sleeps in `wait()` until
    a write is due: FLUSH_SECONDS after the first change, at once for an urgent one (where following began), and
    without any timer while everything is saved, so an idle exporter wakes for nothing.
    """

    def __init__(
        self, state: StateFile, snapshot: Callable[[], Snapshot], *, interval: float = FLUSH_SECONDS
    ) -> None:
        self.state = state
        self._snapshot = snapshot
        self._interval = interval
        self._cond = threading.Condition()
        self._generation = 0
        self._saved_generation = -1
        self._saved: Snapshot | None = None
        self._urgent = False
        self._due: float | None = None
        self.write_errors = 0
        self.failing = False
        self.last_error = ""
        self._urgent_generation = 0
        self._attempted_generation = -1

    @property
    def generation(self) -> int:
        return self._generation

    def changed(self, *, urgent: bool = False) -> None:
        """Counters, positions or memory changed."""
        with self._cond:
            self._generation += 1
            if self._due is None:
                self._due = time.monotonic() + self._interval
            if urgent:
                self._urgent = True
                self._urgent_generation = self._generation
            self._cond.notify_all()

    def caught_up(self) -> bool:
        """Whether every urgent change (where a source began following) has been written, or its write tried:
        a kill from then on loses nothing that was urgent."""
        with self._cond:
            return self._attempted_generation >= self._urgent_generation

    def poke(self) -> None:
        """Wakes `wait` (a stop or reload request)."""
        with self._cond:
            self._cond.notify_all()

    def wait(self, interrupted: Callable[[], bool]) -> None:
        """Sleeps until a write is due or `interrupted()` turns true (checked at each poke)."""
        with self._cond:
            while not interrupted():
                if self._urgent:
                    return
                if self._due is None:
                    self._cond.wait()
                    continue
                left = self._due - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def flush(self) -> bool:
        """Writes the state when it changed since the last write; False when the write failed."""
        with self._cond:
            generation = self._generation
            self._urgent = False
            self._due = None
        try:
            return self._write(generation)
        finally:
            with self._cond:
                self._attempted_generation = max(self._attempted_generation, generation)

    def _write(self, generation: int) -> bool:
        if generation == self._saved_generation:
            return True
        snapshot = replace(self._snapshot(), write_errors=self.write_errors)
        if snapshot == self._saved:
            self._saved_generation = generation
            return True
        try:
            self.state.save(snapshot)
        except OSError as err:
            self.write_errors += 1
            self.last_error = err.strerror or str(err)
            if not self.failing:
                log.error("cannot write state file %s (still serving; will retry): %s", self.state.path, err)
            self.failing = True
            with self._cond:
                if self._due is None:
                    self._due = time.monotonic() + self._interval
            return False
        if self.failing:
            log.info("state file %s written again", self.state.path)
        self.failing = False
        self._saved = snapshot
        self._saved_generation = generation
        return True
