"""Following log files by path or glob through rotation, truncation and restarts (like `tail -F`, but exact).

Semantics, checked on every wake-up (inotify through watchdog) and at least every POLL_SECONDS (or
QUIET_POLL_SECONDS while inotify has proven itself, see FileSource.run):
- The name points to a new inode: rotation. The old file is drained to its end and kept open for
  DRAIN_GRACE_SECONDS after its last growth (the MTA may still append after the rename); the new file is read
  from offset 0. Kind `rename` when the old file still has a name, `recreate` when it was deleted.
- The size of the open file is below the read offset, or its first bytes changed: truncation (copytruncate);
  reading restarts at 0.
- The name does not exist yet: the file is read from offset 0 once it appears (a late file).
- A line is delivered once its newline is read; an unterminated last line is delivered when its file is left.

A position is (device, inode, offset, fingerprint of the first bytes). Resuming from one finds the file again
by inode (or, for a copy or a compressed rotation, by fingerprint) among the name and its rotated siblings
(`name.1`, `name-20261129`, `name.2.gz`), reads it from the saved offset, then every newer sibling, then the
name.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import logging
import lzma
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Final, cast

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from exporter.sources import Position, Sink, SourceStatus
from exporter.sources.lines import BlockSplitter

log = logging.getLogger(__name__)

POLL_SECONDS: Final = 1.0
"""The safety net under inotify, which can overflow silently and does not see network filesystems."""
QUIET_POLL_SECONDS: Final = 10.0
"""The safety net's period while inotify is trusted: every file open, every directory watched, no rotated file
being drained, and no look in the last DISTRUST_SECONDS found a change that inotify had not announced."""
DISTRUST_SECONDS: Final = 60.0
ANNOUNCE_GRACE_SECONDS: Final = 0.5
"""How long after a safety-net look found news inotify still has to announce it before it counts as missed."""
DRAIN_GRACE_SECONDS: Final = 5.0
"""How long a rotated file is still read after it last grew."""
FINGERPRINT_BYTES: Final = 256
READ_CHUNK: Final = 1 << 16
COMPRESSED: Final = (".gz", ".bz2", ".xz")
ROTATED_SEPARATORS: Final = ".-_"


def fingerprint(head: bytes) -> str:
    """Identifies a file by its first bytes: survives a rename, a copy and compression."""
    return hashlib.sha256(head).hexdigest()


@dataclass(frozen=True, slots=True)
class FileId:
    """Which file a position belongs to."""

    dev: int
    ino: int
    fingerprint: str
    fingerprint_len: int


@dataclass
class _Reader:
    """One open file being read: plain, or decompressed from a compressed rotation."""

    file: IO[bytes]
    ident: FileId
    splitter: BlockSplitter
    offset: int = 0
    """Bytes read so far (in the decompressed stream for a compressed file)."""
    consumed: int = 0
    """Offset just after the last delivered line (or dropped overlong tail): where a restart resumes."""
    plain: bool = True
    last_growth: float = field(default_factory=time.monotonic)
    unchanged: tuple[int, int, int, int] | None = None
    """(device, inode, size, mtime) of the name when the last full look found nothing new: while a stat returns
    the same, nothing was written, truncated or renamed, and the look ends there."""

    def position(self) -> Position:
        return {
            "dev": self.ident.dev,
            "ino": self.ident.ino,
            "fingerprint": self.ident.fingerprint,
            "fingerprint_len": self.ident.fingerprint_len,
            "offset": self.consumed,
            "discarding": self.splitter.discarding,
        }


def open_rotated(path: str) -> IO[bytes]:
    """A rotated file for reading, decompressed when its name says it is compressed."""
    suffix = os.path.splitext(path)[1]
    if suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    if suffix == ".bz2":
        return cast(IO[bytes], bz2.open(path, "rb"))
    if suffix == ".xz":
        return cast(IO[bytes], lzma.open(path, "rb"))
    return open(path, "rb", buffering=0)


def _head(path: str, n: int = FINGERPRINT_BYTES) -> bytes:
    with open_rotated(path) as f:
        return f.read(n)


def siblings(path: str) -> list[str]:
    """Rotated versions of `path` next to it: name.1, name-20261129, name.2.gz."""
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    return [
        os.path.join(directory, name)
        for name in names
        if len(name) > len(base) and name.startswith(base) and name[len(base)] in ROTATED_SEPARATORS
    ]


def rotation_age(path: str, rotated: str) -> tuple[int, int, str]:
    """Sort key of a rotated sibling of `path`, older first: name.3 < name.2 < name.1, and
    name-20261128 < name-20261129 (a compression suffix does not count)."""
    rest = os.path.basename(rotated)[len(os.path.basename(path)) :]
    for suffix in COMPRESSED:
        rest = rest.removesuffix(suffix)
    numbered = re.fullmatch(r"[.\-_]([0-9]{1,4})", rest)
    if numbered:
        return (0, -int(numbered.group(1)), "")
    return (1, 0, rest)


def _matches(path: str, saved: FileId) -> bool:
    if saved.fingerprint_len == 0:
        return False
    try:
        head = _head(path, saved.fingerprint_len)
    except (OSError, EOFError, lzma.LZMAError):
        return False
    return len(head) == saved.fingerprint_len and fingerprint(head) == saved.fingerprint


class FollowedFile:
    """One path being followed; rotation, truncation and resume happen here."""

    def __init__(
        self,
        path: str,
        sink: Sink,
        *,
        max_line_bytes: int,
        start_at_end: bool,
        saved: Position | None = None,
    ) -> None:
        self.path = path
        self.status = SourceStatus(name=path, resumed=saved is None)
        self._sink = sink
        self._max_line_bytes = max_line_bytes
        self._start_at_end = start_at_end
        self._saved = saved
        self._live: _Reader | None = None
        self._old: _Reader | None = None
        self._recreate_pending = False
        self._opened = False
        self._failure: str | None = None
        """Why the name cannot be opened, while it cannot (logged and counted once per cause)."""
        self.changes = 0
        """Bumped whenever something is read or a rotation is seen: how the source tells a look that found
        news from one that did not."""

    @property
    def settled(self) -> bool:
        """Open, and not draining a rotated file: inotify on the directory announces all that can happen."""
        return self._live is not None and self._old is None

    def _rotated(self, kind: str) -> None:
        self.changes += 1
        self._sink.rotated(self.path, kind)

    def _position(self) -> Position | None:
        live = self._live
        if live is None:
            return None if self._old is None else {**self._old.position(), "draining": None}
        pos = live.position()
        pos["draining"] = None if self._old is None else self._old.position()
        return pos

    def _deliver(
        self, reader: _Reader, block: bytes, position: Callable[[], Position | None] | None = None
    ) -> None:
        consumed = reader.offset - len(reader.splitter.partial)
        nbytes = consumed - reader.consumed
        if not block and nbytes == 0:
            return
        reader.consumed = consumed
        self.changes += 1
        self.status.last_read = time.time()
        self._sink.block(self.path, block, nbytes, self.path, (position or self._position)())

    def _read(
        self, reader: _Reader, stop: threading.Event, position: Callable[[], Position | None] | None = None
    ) -> bool:
        """Reads `reader` to its end, delivering lines as they complete; True when it grew."""
        grew = False
        while not stop.is_set():
            data = reader.file.read(READ_CHUNK)
            if not data:
                break
            if reader.plain and self._head_changed(reader):
                # Truncated and written again since the last look: these bytes are the new content read from
                # the old offset. poll() starts the new content at 0 instead.
                reader.file.seek(reader.offset)
                break
            grew = True
            reader.offset += len(data)
            if reader.plain and reader.ident.fingerprint_len < FINGERPRINT_BYTES:
                self._refresh_fingerprint(reader)
            self._deliver(reader, reader.splitter.feed(data), position)
        if grew:
            reader.last_growth = time.monotonic()
        return grew

    def _finish(self, reader: _Reader, position: Callable[[], Position | None] | None = None) -> None:
        """Delivers an unterminated last line and closes the file."""
        self._deliver(reader, reader.splitter.flush(), position)
        reader.file.close()

    @staticmethod
    def _refresh_fingerprint(reader: _Reader) -> None:
        fd = reader.file.fileno()
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        if len(head) > reader.ident.fingerprint_len:
            reader.ident = FileId(reader.ident.dev, reader.ident.ino, fingerprint(head), len(head))

    def _open_plain(self, path: str, offset: int, discarding: bool = False) -> _Reader:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - kept open while followed
        st = os.fstat(f.fileno())
        head = os.pread(f.fileno(), FINGERPRINT_BYTES, 0)
        ident = FileId(st.st_dev, st.st_ino, fingerprint(head), len(head))
        f.seek(offset)
        splitter = BlockSplitter(self._max_line_bytes, discarding=discarding)
        return _Reader(f, ident, splitter, offset=offset, consumed=offset)

    def _open_any(self, path: str, ident: FileId, offset: int, discarding: bool) -> _Reader:
        if not path.endswith(COMPRESSED):
            reader = self._open_plain(path, offset, discarding)
            reader.ident = ident  # a copy keeps the identity it was saved under
            return reader
        f = open_rotated(path)
        f.seek(offset)
        splitter = BlockSplitter(self._max_line_bytes, discarding=discarding)
        return _Reader(f, ident, splitter, offset=offset, consumed=offset, plain=False)

    def _open_live(self, offset_at_end: bool) -> bool:
        try:
            reader = self._open_plain(self.path, 0)
        except OSError as err:
            self._cannot_open(err)
            return False
        if self._failure is not None:
            log.info("%s: opened", self.path)
            self._failure = None
        self._opened = True
        if offset_at_end:
            end = os.fstat(reader.file.fileno()).st_size
            reader.file.seek(end)
            reader.offset = reader.consumed = end
        self._live = reader
        return True

    def _cannot_open(self, err: OSError) -> None:
        """Logs and counts a cause once; the poll retries every POLL_SECONDS. A name missing between a delete
        and its re-creation is a rotation, not a failure."""
        if isinstance(err, FileNotFoundError) and self._opened:
            return
        why = err.strerror or str(err)
        if why == self._failure:
            return
        self._failure = why
        if isinstance(err, FileNotFoundError):
            log.warning("%s does not exist (yet); it is read from its start when it appears", self.path)
        else:
            log.warning("cannot open %s (retrying every %.0f s): %s", self.path, POLL_SECONDS, why)
        self._sink.error(self.path)

    def _locate(self, saved: Position) -> tuple[str, bool] | None:
        """Where the saved file is now: (path, is_the_live_name), or None when it is gone."""
        ident = FileId(saved["dev"], saved["ino"], saved["fingerprint"], saved["fingerprint_len"])
        offset = saved["offset"]
        try:
            st = os.stat(self.path)
            same_inode = (st.st_dev, st.st_ino) == (ident.dev, ident.ino) and st.st_size >= offset
            if same_inode and (ident.fingerprint_len == 0 or _matches(self.path, ident)):
                return self.path, True
        except OSError:
            pass
        by_fingerprint = None
        for candidate in siblings(self.path):
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (ident.dev, ident.ino) and (
                ident.fingerprint_len == 0 or _matches(candidate, ident)
            ):
                return candidate, False
            if by_fingerprint is None and _matches(candidate, ident):
                by_fingerprint = candidate
        return None if by_fingerprint is None else (by_fingerprint, False)

    def _drain_saved(self, path: str, saved: Position, stop: threading.Event, main: Position | None) -> None:
        """Reads a file found again from its saved offset to its end (it no longer grows)."""
        ident = FileId(saved["dev"], saved["ino"], saved["fingerprint"], saved["fingerprint_len"])
        reader = self._open_any(path, ident, saved["offset"], bool(saved.get("discarding")))

        def position() -> Position:
            if main is None:
                return {**reader.position(), "draining": None}
            return {**main, "draining": reader.position()}

        try:
            self._read(reader, stop, position)
            if not stop.is_set():
                self._deliver(reader, reader.splitter.flush(), position)
        finally:
            reader.file.close()

    def _resume(self, saved: Position, stop: threading.Event) -> None:
        """Reads what was written while the exporter was down, then opens the live file where it belongs."""
        main = {k: v for k, v in saved.items() if k != "draining"}
        draining = saved.get("draining")
        if draining:
            found = self._locate(draining)
            if found is None:
                log.warning(
                    "%s: a rotated file being drained at shutdown is gone; its tail is lost", self.path
                )
            else:
                self._drain_saved(found[0], draining, stop, main)
        if stop.is_set():
            return
        found = self._locate(main)
        if found is not None and found[1]:
            self._live = self._open_plain(self.path, main["offset"], bool(main.get("discarding")))
            return
        if found is None:
            log.warning(
                "%s: the file of the saved position is gone; reading the current file from its start",
                self.path,
            )
            self._open_live(offset_at_end=False)
            return
        self._drain_saved(found[0], main, stop, None)
        consumed = {main["fingerprint"]}
        last = main
        while not stop.is_set():
            last = self._drain_newer(last, consumed, stop)
            if stop.is_set() or not self._open_live(offset_at_end=False) or self._live is None:
                return
            # The MTA may rotate while we read the backlog: then the file we meant to open next is a sibling now,
            # and the name holds a later one. Read those first.
            if self._unread_sibling(last, consumed) is None:
                return
            self._live.file.close()
            self._live = None

    def _unread_sibling(self, last: Position, consumed: set[str]) -> tuple[str, bytes] | None:
        """The oldest rotated sibling newer than the file of `last` and not read yet: (path, first bytes)."""
        found = self._locate(last)
        if found is None or found[1]:
            return None
        for path in self._newer_siblings(found[0]):
            try:
                head = _head(path)
            except (OSError, EOFError, lzma.LZMAError):
                continue
            if head and fingerprint(head) not in consumed and not self._same_as_live(head):
                return path, head
        return None

    def _drain_newer(
        self, last: Position, consumed: set[str], stop: threading.Event, *, skipped: bool = False
    ) -> Position:
        """Reads, oldest first, the rotated siblings newer than the file of `last` that were not read yet; the
        siblings are looked up again after each one (names move when the MTA rotates meanwhile). Returns the
        position of the last file read. `skipped`: these were created and rotated away between two looks."""
        while not stop.is_set():
            unread = self._unread_sibling(last, consumed)
            if unread is None:
                break
            path, head = unread
            if skipped:
                log.warning("%s: %s was created and rotated between two looks; reading it", self.path, path)
            fp = fingerprint(head)
            consumed.add(fp)
            st = os.stat(path)
            last = {
                "dev": st.st_dev,
                "ino": st.st_ino,
                "fingerprint": fp,
                "fingerprint_len": len(head),
                "offset": 0,
            }
            self._drain_saved(path, last, stop, None)
        return last

    def _newer_siblings(self, than: str) -> list[str]:
        """Rotated siblings newer than `than`, oldest first, by the rotation's naming (not by mtime: a
        compressed copy gets a new mtime)."""
        limit = rotation_age(self.path, than)
        found = [p for p in siblings(self.path) if p != than and rotation_age(self.path, p) > limit]
        return sorted(found, key=lambda p: rotation_age(self.path, p))

    def _same_as_live(self, head: bytes) -> bool:
        try:
            live_head = _head(self.path, len(head))
        except OSError:
            return False
        return live_head == head

    def start(self, stop: threading.Event) -> None:
        """Opens the file (or resumes from the saved position) and reads what is due."""
        saved, self._saved = self._saved, None
        if saved is not None:
            try:
                self._resume(saved, stop)
            except (OSError, KeyError, TypeError, EOFError, lzma.LZMAError) as err:
                log.error(
                    "%s: cannot resume from the saved position (%s); reading from the start", self.path, err
                )
                self._open_live(offset_at_end=False)
        else:
            self._open_live(offset_at_end=self._start_at_end)
        self.status.open = True
        self.poll(stop)
        self._record_start()
        self.status.resumed = True

    def _record_start(self) -> None:
        """Saves where following began, before any new line: a restart after a quiet spell then reads the
        lines written while the exporter was down instead of starting at the end again."""
        if self._live is not None:
            self._sink.block(self.path, b"", 0, self.path, self._position())

    def poll(self, stop: threading.Event) -> None:
        """Reads new lines and notices rotation and truncation."""
        live = self._live
        if live is not None and self._old is None and live.unchanged is not None:
            # The quiet case, one stat: an idle exporter's look should touch as little as possible.
            try:
                st = os.stat(self.path)
            except OSError:
                st = None
            if st is not None and (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == live.unchanged:
                return
        self._look(stop)

    def _look(self, stop: threading.Event) -> None:
        now = time.monotonic()
        if self._old is not None:
            grew = self._read(self._old, stop)
            old_gone = os.fstat(self._old.file.fileno()).st_nlink == 0
            if not grew and (now - self._old.last_growth > DRAIN_GRACE_SECONDS or old_gone):
                old, self._old = self._old, None
                self._finish(old)
        if self._live is None:
            if not self._open_live(offset_at_end=False):
                return
            if self._recreate_pending:
                self._recreate_pending = False
                self._rotated("recreate")
            else:
                self._record_start()  # a late file
        live = self._live
        assert live is not None
        self._read(live, stop)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._on_missing(live, now)
            return
        fd = live.file.fileno()
        if (st.st_dev, st.st_ino) != (live.ident.dev, live.ident.ino):
            self._read(live, stop)
            kind = "recreate" if os.fstat(fd).st_nlink == 0 else "rename"
            if self._old is not None:
                old, self._old = self._old, None
                self._read(old, stop)
                self._finish(old)
            self._old = live
            self._live = None
            self._open_live(offset_at_end=False)
            self._rotated(kind)
            self._drain_skipped(live, stop)
            if self._live is not None:
                self._read(self._live, stop)
        else:
            size = os.fstat(fd).st_size
            if size < live.offset or self._head_changed(live):
                self._drain_copy(live, stop)
                self._finish_partial(live)
                live.file.seek(0)
                live.offset = live.consumed = 0
                live.splitter = BlockSplitter(self._max_line_bytes)
                head = os.pread(fd, FINGERPRINT_BYTES, 0)
                live.ident = FileId(live.ident.dev, live.ident.ino, fingerprint(head), len(head))
                self._rotated("truncate")
                self._read(live, stop)
            self.status.size = max(size, live.offset)
            quiet = live is self._live and size == live.offset and self._old is None
            live.unchanged = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if quiet else None
        self.status.offset = live.consumed

    def _on_missing(self, live: _Reader, now: float) -> None:
        """The name is gone: read the open file until it is deleted and idle, then wait for a new one."""
        fd = live.file.fileno()
        if os.fstat(fd).st_nlink == 0 and now - live.last_growth > DRAIN_GRACE_SECONDS:
            self._live = None
            self._finish(live)
            self._recreate_pending = True
            self.status.offset = self.status.size = 0

    def _drain_skipped(self, old: _Reader, stop: threading.Event) -> None:
        """Reads whole the generations that were created and rotated away between two looks (a busy host, an
        inotify overflow): the siblings newer than where the file we were reading went."""
        try:
            self._drain_newer(old.position(), {old.ident.fingerprint}, stop, skipped=True)
        except (OSError, EOFError, lzma.LZMAError) as err:
            log.warning("%s: cannot read a rotated file skipped between two looks: %s", self.path, err)

    def _drain_copy(self, live: _Reader, stop: threading.Event) -> None:
        """copytruncate copied the file before truncating it: what was written after our last read is in the
        copy (the newest sibling with the same first bytes), so it is read from there to the copy's end."""
        ordered = sorted(siblings(self.path), key=lambda p: rotation_age(self.path, p), reverse=True)
        found = next((p for p in ordered if _matches(p, live.ident)), None)
        if found is None:
            return
        copy: _Reader | None = None
        try:
            with open_rotated(found) as f:
                f.seek(live.offset)
                copy = _Reader(f, live.ident, live.splitter, live.offset, live.consumed, plain=False)
                self._read(copy, stop, lambda: {**copy.position(), "draining": None} if copy else None)
        except (OSError, EOFError, lzma.LZMAError) as err:
            log.warning("%s: cannot read the end of the truncated file from %s: %s", self.path, found, err)
        if copy is not None:
            live.offset, live.consumed = copy.offset, copy.consumed

    def _finish_partial(self, live: _Reader) -> None:
        self._deliver(live, live.splitter.flush())

    @staticmethod
    def _head_changed(reader: _Reader) -> bool:
        n = reader.ident.fingerprint_len
        if n == 0:
            return False
        return fingerprint(os.pread(reader.file.fileno(), n, 0)) != reader.ident.fingerprint

    def close(self) -> None:
        for reader in (self._old, self._live):
            if reader is not None:
                reader.file.close()


class _Wake(FileSystemEventHandler):
    """Turns any inotify event in a watched directory into a wake-up of the reader loop."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._event.set()


class FileSource:
    """Follows every file named by a list of paths and globs; globs are expanded again on every poll."""

    def __init__(
        self,
        patterns: list[str],
        sink: Sink,
        *,
        max_line_bytes: int,
        from_beginning: bool = False,
        saved: dict[str, Position] | None = None,
    ) -> None:
        self._patterns = patterns
        self._sink = sink
        self._max_line_bytes = max_line_bytes
        self._from_beginning = from_beginning
        self._saved = dict(saved or {})
        self._files: dict[str, FollowedFile] = {}
        self._wake = threading.Event()
        self._watched: set[str] = set()
        self._directories = {os.path.dirname(os.path.abspath(p)) for p in patterns}
        """Where the patterns' files live: the directories inotify watches."""
        self._observer: Any = None
        self.looks = 0
        """How many times the followed files were looked at (wake-ups and safety-net polls)."""
        self._started = False
        for pattern in patterns:
            if not glob.has_magic(pattern):
                self._add(pattern, at_start=True)
        for path in self._expand():
            self._add(path, at_start=True)

    def _expand(self) -> list[str]:
        found: list[str] = []
        for pattern in self._patterns:
            if glob.has_magic(pattern):
                found.extend(sorted(p for p in glob.glob(pattern) if os.path.isfile(p)))
        return found

    def _add(self, path: str, *, at_start: bool) -> None:
        if path in self._files:
            return
        # A file first seen after start holds only lines written since: read it whole.
        start_at_end = at_start and not self._from_beginning
        self._files[path] = FollowedFile(
            path,
            self._sink,
            max_line_bytes=self._max_line_bytes,
            start_at_end=start_at_end,
            saved=self._saved.pop(path, None),
        )

    def _changes(self) -> tuple[int, int]:
        return len(self._files), sum(f.changes for f in self._files.values())

    def _inotify_covers_all(self) -> bool:
        return self._directories <= self._watched and all(f.settled for f in self._files.values())

    def statuses(self) -> list[SourceStatus]:
        return [f.status for f in list(self._files.values())]

    def _watch(self) -> None:
        for directory in self._directories - self._watched:
            if os.path.isdir(directory):
                try:
                    self._observer.schedule(_Wake(self._wake), directory, recursive=False)
                    self._watched.add(directory)
                except OSError as err:
                    log.warning("cannot watch %s (polling only): %s", directory, err)

    def run(self, stop: threading.Event) -> None:
        # The observer's own loop need not wake every second: our stat poll is the safety net.
        self._observer = Observer(timeout=30)
        self._observer.daemon = True
        self._watch()
        self._observer.start()
        try:
            for followed in list(self._files.values()):
                if stop.is_set():
                    return
                followed.start(stop)
            last_scan = time.monotonic()
            distrust_until = 0.0
            scan_pending = False
            while not stop.is_set():
                # Look every second while inotify may miss something; every QUIET_POLL_SECONDS once it has
                # shown it does not (an idle exporter then costs a tenth of the wake-ups). A look that finds news
                # inotify did not announce (an overflow, a network filesystem) brings back the 1 s safety net.
                now = time.monotonic()
                if scan_pending:
                    timeout = max(0.0, last_scan + POLL_SECONDS - now)
                elif now < distrust_until or not self._inotify_covers_all():
                    timeout = POLL_SECONDS
                else:
                    timeout = QUIET_POLL_SECONDS
                woke = self._wake.wait(timeout)
                if woke:  # a wake-up after the wait timed out stays set: it was not seen, so it is not lost
                    self._wake.clear()
                self.looks += 1
                now = time.monotonic()
                before = self._changes()
                scan_pending = now - last_scan < POLL_SECONDS
                if not scan_pending:
                    last_scan = now
                    self._watch()
                    for path in self._expand():
                        if path not in self._files:
                            self._add(path, at_start=False)
                            self._files[path].start(stop)
                for followed in list(self._files.values()):
                    try:
                        followed.poll(stop)
                    except OSError as err:
                        log.warning("%s: %s", followed.path, err)
                        self._sink.error(followed.path)
                # inotify's events reach us through watchdog's thread, a moment after the write: news written just
                # before this look is announced just after it, and is no reason for distrust.
                if (
                    not woke
                    and self._changes() != before
                    and self._inotify_covers_all()
                    and (now < distrust_until or not self._wake.wait(ANNOUNCE_GRACE_SECONDS))
                ):
                    if now >= distrust_until:
                        log.debug(
                            "a look found news inotify had not announced; looking every %.0f s", POLL_SECONDS
                        )
                    distrust_until = now + DISTRUST_SECONDS
        finally:
            self._observer.stop()
            for followed in self._files.values():
                followed.close()
