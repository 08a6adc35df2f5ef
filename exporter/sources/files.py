"""Following log files by path or glob through rotation, truncation and restarts (like `tail -F`, but exact).

Each followed file has a reader thread of its own, so a file that blocks (a hung network filesystem) stalls
nothing else. At every look (an inotify wake-up, or the stat safety net of `pacer`):
- The name points to a new inode: rotation. The old file is drained to its end and kept open for `drain_grace`
  seconds after its last growth (the MTA may still append after the rename); the new file is read from offset 0.
  Kind `rename` when the old file still has a name, `recreate` when it was deleted. The newest rotated file that a
  restart's backlog reads, or that was created and rotated away between two looks, is kept open the same way.
- The open file no longer holds what was read from it (smaller than the read offset, its first bytes or the bytes
  just before the offset changed): truncation. Reading goes on after the last line still in the file when the file
  was cut to a middle offset, and from 0 when it was emptied (copytruncate: what was written after the last read is
  read from the copy first).
- The name does not exist yet: the file is read from offset 0 once it appears (a late file), also by an exporter
  restarted meanwhile: where following began is saved as the start of a file not there yet.
- The name is a FIFO, a device or a directory: it is not opened, and its state says so.
- A line is delivered once its newline is read; an unterminated last line is delivered when its file is left.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Final

from exporter.compressed import READ_ERRORS
from exporter.sources import MAX_RETIRED, Sink, SourceStatus, join
from exporter.sources.backlog import Backlog
from exporter.sources.generations import oldest_first, rotated
from exporter.sources.identity import (
    ABSENT,
    FileId,
    NotRegularFile,
    fingerprint,
    head,
    matches,
    open_generation,
)
from exporter.sources.pacer import DEFAULT_TIMING, Pacer, Timing, Wake, new_wake
from exporter.sources.position import FilePosition
from exporter.sources.reader import Reader, open_plain
from exporter.sources.watch import DirectoryWatch

log = logging.getLogger(__name__)

MAX_FINISHED: Final = 8
"""How many files read to their end are remembered by their first bytes (see FollowedFile._finished)."""

STATE_OPEN: Final = "open"
STATE_MISSING: Final = "missing"
STATE_PERMISSION_DENIED: Final = "permission_denied"
STATE_NOT_REGULAR: Final = "not_regular_file"
STATE_ERROR: Final = "error"

STOP_SECONDS: Final = 4.0
"""How long stopping waits for the reader threads, in all (less than the daemon waits for the source)."""

PERMISSION_HINT: Final = (
    "; the exporter's user needs read access (on Debian and Ubuntu, mail logs are root:adm 0640: add the user to "
    "the adm group, e.g. SupplementaryGroups=adm in the systemd unit)"
)


def open_failure(err: OSError) -> str:
    """The source state for an error opening a log."""
    if isinstance(err, NotRegularFile):
        return STATE_NOT_REGULAR
    if isinstance(err, FileNotFoundError) or err.errno == errno.ENOTDIR:
        return STATE_MISSING
    if isinstance(err, PermissionError):
        return STATE_PERMISSION_DENIED
    return STATE_ERROR


class FollowedFile:
    """One path being followed; rotation, truncation and resume happen here."""

    def __init__(
        self,
        path: str,
        sink: Sink,
        *,
        max_line_bytes: int,
        start_at_end: bool,
        saved: FilePosition | None = None,
        timing: Timing = DEFAULT_TIMING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(path))
        self.status = SourceStatus(name=path, started=False, resumed=saved is None)
        self._sink = sink
        self._max_line_bytes = max_line_bytes
        self._start_at_end = start_at_end
        self._saved = saved
        self._timing = timing
        self._clock = clock
        self._live: Reader | None = None
        self._old: Reader | None = None
        self._recreate_pending = False
        self._opened = False
        self._delivered: FilePosition | None = None
        """The position of the last block delivered: where a reader that failed starts again."""
        self._listening: set[str] = set()
        """The directories whose inotify events wake this reader."""
        self.changes = 0
        """Bumped whenever something is read or a rotation is seen: how a loop tells a look that found news from
        one that did not."""
        self.retirable = False
        """A glob's match: followed while the glob finds it, retired once it has been gone for a while."""
        self.retired = False
        """Set by the reader loop as its last act when it retired the file."""
        self._gone_since: float | None = None
        self._newest_generation: tuple[FilePosition | None] | None = None
        """The newest rotated generation when following began or the last rotation was seen ((None,) when there was
        none; None when not known): a file deleted since leaves no generation to find the newer ones by, and those
        newer than this one were made since."""
        self._rotations_seen = 0
        self._finished: list[str] = []
        """The fingerprints of the last files read to their end: a generation that holds one of them (compressed
        since) was read."""

    @property
    def settled(self) -> bool:
        """Open, and not draining a rotated file: inotify on the directory announces all that can happen."""
        return self._live is not None and self._old is None

    def _rotated(self, kind: str) -> None:
        self.changes += 1
        self._rotations_seen += 1
        self._sink.rotated(self.path, kind)

    def position(self) -> FilePosition | None:
        live, old = self._live, self._old
        if live is None:
            return None if old is None else old.position()
        return live.position(None if old is None else old.position())

    def last_position(self) -> FilePosition | None:
        """Where reading would go on: the open files', else the last position delivered or saved."""
        return self.position() or self._delivered or self._saved

    def _gone_long_enough(self) -> bool:
        """Whether a retirable file has been gone for `retire_after`: nothing open (what was open is read to its
        end) and nothing at its name."""
        if (
            not self.retirable
            or self._live is not None
            or self._old is not None
            or os.path.lexists(self.path)
        ):
            self._gone_since = None
            return False
        now = self._clock()
        if self._gone_since is None:
            self._gone_since = now
        return now - self._gone_since >= self._timing.retire_after

    def _deliver(
        self, reader: Reader, block: bytes, position: Callable[[], FilePosition] | None = None
    ) -> None:
        """Hands a block to the sink with the position just after it: `position` (default: the follower's) is asked
        once the reader has moved past the block."""
        consumed = reader.offset - len(reader.splitter.partial)
        nbytes = consumed - reader.consumed
        if not block and nbytes == 0:
            return
        reader.consumed = consumed
        self.changes += 1
        self.status.last_read = time.time()
        self._delivered = position() if position is not None else self.position()
        self._sink.block(self.path, block, nbytes, self._delivered)

    def _read(self, reader: Reader, stop: threading.Event) -> bool:
        """Reads `reader` to its end, delivering lines as they complete; True when it grew."""
        grew = False
        while not stop.is_set():
            if reader.plain and not reader.continuous():
                break  # truncated since the last look: _look starts the new content where it belongs
            data = reader.read_chunk()
            if not data:
                break
            grew = True
            self._deliver(reader, reader.splitter.feed(data))
        if grew:
            reader.last_growth = self._clock()
        return grew

    def _finish(self, reader: Reader) -> None:
        """Delivers an unterminated last line and closes the file."""
        self._deliver(reader, reader.splitter.flush())
        reader.file.close()
        if reader.plain:
            self._note_finished(reader.ident.fingerprint)

    def _note_finished(self, fingerprint: str) -> None:
        if fingerprint not in self._finished:
            self._finished = [*self._finished[-(MAX_FINISHED - 1) :], fingerprint]

    def _open_live(self, offset_at_end: bool) -> bool:
        try:
            reader = open_plain(self.path, 0, self._max_line_bytes)
        except OSError as err:
            self._cannot_open(err)
            return False
        if self.status.state not in (STATE_OPEN, "opening"):
            log.info("%s: opened", self.path)
        self._opened = True
        self._set_state(STATE_OPEN)
        if offset_at_end:
            end = os.fstat(reader.file.fileno()).st_size
            reader.restart_at(end, self._max_line_bytes)
        self._live = reader
        return True

    def _set_state(self, state: str, detail: str = "") -> None:
        self.status.state = state
        self.status.detail = detail
        self.status.open = state == STATE_OPEN

    def _cannot_open(self, err: OSError) -> None:
        """Logs and counts a cause once; the safety net retries. A name missing between a delete and its
        re-creation is a rotation, not a failure."""
        state = open_failure(err)
        if state == STATE_MISSING and self._opened:
            return
        why = err.strerror or str(err)
        if (state, why) == (self.status.state, self.status.detail):
            return
        self._set_state(state, why)
        if state == STATE_MISSING:
            log.warning("%s does not exist (yet); it is read from its start when it appears", self.path)
        elif state == STATE_PERMISSION_DENIED:
            log.warning("cannot open %s: %s%s", self.path, why, PERMISSION_HINT)
        elif state == STATE_NOT_REGULAR:
            log.warning("%s is not a regular file (a FIFO, device or directory); not following it", self.path)
        else:
            log.warning("cannot open %s (retrying): %s", self.path, why)
        self._sink.error(self.path)

    def start(self, stop: threading.Event) -> None:
        """Opens the file (or resumes from the saved position), reads what is due and records where following
        began, so that a restart after a quiet spell reads what was logged while the exporter was down."""
        self._open(stop, offset_at_end=self._start_at_end)
        if stop.is_set():
            return
        self.look(stop)
        self._note_newest_generation()
        self._record_start()
        self.status.resumed = True
        self.status.started = True

    def _open(self, stop: threading.Event, *, offset_at_end: bool) -> bool:
        """Opens the live file, first reading the backlog when there is a saved position."""
        saved = self._saved
        if saved is None:
            return self._open_live(offset_at_end)
        backlog = Backlog(self.path, self._max_line_bytes, self._deliver, stop)
        try:
            live = backlog.resume(saved)
        except OSError as err:
            # Retried at the next look, from what was delivered by then (the backlog may be partly read). Reading
            # the file from its start instead would count again every line before the saved offset.
            backlog.close()
            self._saved = self._delivered or saved
            self._cannot_open(err)
            return False
        self._saved = None
        self._adopt(backlog.previous)
        if live is None:
            return False if stop.is_set() else self._open_live(offset_at_end=False)
        self._live = live
        self._opened = True
        self._set_state(STATE_OPEN)
        return True

    def _moved(self) -> None:
        """The reader went back to a line boundary without reading anything (a cut to a middle offset): the position
        goes back too, so that a restart does not resume past lines written since the cut."""
        self._delivered = self.position()
        self._sink.block(self.path, b"", 0, self._delivered)

    def _adopt(self, previous: Reader | None) -> None:
        """Drains `previous`, the newest rotated file a backlog read, like a file seen rotated: the MTA may still
        append to it for a moment."""
        if previous is None:
            return
        if self._old is not None:
            old, self._old = self._old, None
            self._finish(old)
        previous.last_growth = self._clock()
        self._old = previous

    def _record_start(self) -> None:
        position = self.position()
        if position is not None:
            self._delivered = position
        self._sink.started(self.path, position or FilePosition(ABSENT, 0))

    def look(self, stop: threading.Event) -> None:
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
        rotations = self._rotations_seen
        self._look_once(stop)
        if self._rotations_seen != rotations:
            self._note_newest_generation()

    def _note_newest_generation(self) -> None:
        """Notes the newest rotated generation now (see _newest_generation)."""
        live = self._live
        directory, base = os.path.split((live.path if live is not None else "") or self.path)
        try:
            names = oldest_first(base, os.listdir(directory or "."))
            if not names:
                self._newest_generation = (None,)
                return
            path = os.path.join(directory, names[-1])
            with open_generation(path) as f:
                first = head(f)
                st = os.fstat(f.fileno())
        except READ_ERRORS:
            self._newest_generation = None
            return
        ident = FileId(st.st_dev, st.st_ino, fingerprint(first), len(first))
        self._newest_generation = (FilePosition(ident, 0, path=path),)

    def _look_once(self, stop: threading.Event) -> None:
        now = self._clock()
        if self._old is not None:
            grew = self._read(self._old, stop)
            old_gone = os.fstat(self._old.file.fileno()).st_nlink == 0
            if not grew and (now - self._old.last_growth > self._timing.drain_grace or old_gone):
                old, self._old = self._old, None
                self._finish(old)
        if self._live is None:
            if not self._open(stop, offset_at_end=False):
                return
            if self._recreate_pending:
                self._recreate_pending = False
                self._rotated("recreate")
                self._drain_skipped(None, stop)
            else:
                self._record_start()  # a late file
        live = self._live
        assert live is not None
        self._check_truncation(live, stop)
        self._read(live, stop)
        try:
            st = os.stat(self.path)
        except OSError:  # gone, or no longer a name that leads to a file (a symlink loop): read what is open
            self._on_missing(live, now)
            return
        fd = live.file.fileno()
        if not live.ident.same_inode(st):
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
            if self._check_truncation(live, stop):
                self._read(live, stop)
            size = os.fstat(fd).st_size
            self.status.size = max(size, live.offset)
            quiet = live is self._live and size == live.offset and self._old is None
            live.unchanged = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if quiet else None
        self.status.offset = live.consumed

    def _check_truncation(self, live: Reader, stop: threading.Event) -> bool:
        """Notices a truncation of the live file and goes on where its new content starts; True when it did."""
        size = os.fstat(live.file.fileno()).st_size
        if size >= live.offset and live.continuous():
            return False
        keep = live.intact_until(size)
        if 0 < keep <= live.offset - len(live.tail):
            # The cut is before the bytes kept of what was read: where it was cannot be told, so the file is taken
            # to hold only old lines now. Lines already appended after the cut are not counted.
            log.warning("%s: cut to %d bytes, more than %d bytes before where it was read; reading on at its "
                        "end (lines written after the cut and before this look, if any, are not counted)",
                        self.path, size, len(live.tail))  # fmt: skip
            live.restart_at(min(keep, live.consumed), self._max_line_bytes)
        elif keep > 0:
            log.info("%s: truncated to %d bytes; reading on from the last line still there", self.path, size)
            live.restart_at(min(keep, live.consumed), self._max_line_bytes)
            self._moved()
        else:
            self._drain_copy(live, stop)
            self._deliver(live, live.splitter.flush())
            # What the file held is read to its end, and any copy of it begins with those bytes.
            self._note_finished(live.ident.fingerprint)
            live.restart_at(0, self._max_line_bytes)
        self._rotated("truncate")
        return True

    def _on_missing(self, live: Reader, now: float) -> None:
        """The name is gone: read the open file until it is deleted and idle, then wait for a new one."""
        fd = live.file.fileno()
        if os.fstat(fd).st_nlink == 0 and now - live.last_growth > self._timing.drain_grace:
            self._live = None
            self._finish(live)
            self._recreate_pending = True
            self.status.offset = self.status.size = 0

    def _drain_skipped(self, old: Reader | None, stop: threading.Event) -> None:
        """Reads the generations that were created and rotated away between two looks (a busy host, an inotify
        overflow): the generations newer than where the file we were reading went, or, when it was deleted (`old`
        deleted, or None when it was finished already), than the newest generation when the last rotation was seen.
        The newest of them becomes the file drained with the grace."""
        deleted = old is None or os.fstat(old.file.fileno()).st_nlink == 0
        if deleted and self._newest_generation is None:
            return
        previous = None
        if old is not None:
            reader = old

            def position() -> FilePosition:
                return self.position() or reader.position()

            previous = (old, position)
        backlog = Backlog(
            self.path,
            self._max_line_bytes,
            self._deliver,
            stop,
            target=old.path if old is not None else "",
            previous=previous,
        )
        try:
            # A deleted file may live on as a generation still (compressed, or copied): counted from there first.
            if old is not None and (not deleted or backlog.locate(old.position()) is not None):
                backlog.drain_newer(old.position(), {old.ident.fingerprint}, skipped=True)
            elif self._newest_generation is not None:
                consumed = {*self._finished, *((old.ident.fingerprint,) if old is not None else ())}
                backlog.drain_made_since(self._newest_generation[0], consumed)
        except READ_ERRORS as err:
            log.warning("%s: cannot read a rotated file skipped between two looks: %s", self.path, err)
        newest = backlog.previous
        if newest is not old:  # the backlog finished `old` when it read a newer generation
            if old is not None:
                self._old = None
            self._adopt(newest)

    def _drain_copy(self, live: Reader, stop: threading.Event) -> None:
        """copytruncate copied the file before truncating it: what was written after our last read is in the
        copy (the newest generation with the same first bytes, beside the file a symbolic link leads to), so it is
        read from there to the copy's end."""
        directory, base = os.path.split(live.path or self.path)
        names = oldest_first(base, os.listdir(directory or "."))
        found = next(
            (
                os.path.join(directory, n)
                for n in reversed(names)
                if matches(os.path.join(directory, n), live.ident)
            ),
            None,
        )
        if found is None:
            return
        try:
            st = os.stat(found)
            with open_generation(found) as f:
                f.seek(live.offset)
                # The copy's own identity: the live file's inode is the truncated file's.
                ident = FileId(st.st_dev, st.st_ino, live.ident.fingerprint, live.ident.fingerprint_len)
                copy = Reader(f, ident, live.splitter, live.offset, live.consumed, plain=False, path=found)
                old = self._old

                def position() -> FilePosition:
                    # A rotated file still drained stays in the position: its last line may be unterminated yet.
                    return copy.position(None if old is None else old.position())

                while not stop.is_set() and (data := copy.read_chunk()):
                    self._deliver(copy, copy.splitter.feed(data), position)
        except READ_ERRORS as err:
            log.warning("%s: cannot read the end of the truncated file from %s: %s", self.path, found, err)
            return
        live.offset, live.consumed = copy.offset, copy.consumed
        self._drain_later_copies(live, found, stop)

    def _drain_later_copies(self, live: Reader, copy: str, stop: threading.Event) -> None:
        """The copies that later copytruncates made between the same two looks (a stalled exporter) hold lines
        written after the truncation that `copy` records and never read from the live file: each is read whole,
        oldest first, after the end of `copy`'s last line."""
        try:
            st = os.stat(copy)
        except OSError:
            return
        self._deliver(live, live.splitter.flush())
        ident = live.ident
        last = FilePosition(
            FileId(st.st_dev, st.st_ino, ident.fingerprint, ident.fingerprint_len), live.offset, path=copy
        )
        backlog = Backlog(self.path, self._max_line_bytes, self._deliver, stop, target=live.path)
        try:
            # Only copies of the live file: they end where the file itself is, renamed meanwhile (it and what is
            # newer than it are read when the rename is seen, next).
            backlog.drain_newer(
                last,
                {ident.fingerprint, fingerprint(head(live.file))},
                skipped=True,
                until=os.fstat(live.file.fileno()),
            )
        except READ_ERRORS as err:
            log.warning("%s: cannot read a copy made between two looks: %s", self.path, err)
        finally:
            backlog.let_go()

    def run(self, stop: threading.Event, wake: Wake, pacer: Pacer, watch: DirectoryWatch | None) -> None:
        """The reader loop: looks at every wake-up and at the safety net's pace until `stop` is set."""
        self._watched(watch, wake)
        self.start(stop)
        self.status.failed = ""
        while not stop.is_set():
            trusted = self._watched(watch, wake) and self.settled
            woke = wake.wait(pacer.timeout(trusted))
            if woke:  # a wake-up after the wait timed out stays set: it was not seen, so it is not lost
                wake.clear()
            if stop.is_set():
                break
            self._watched(watch, wake)
            before = self.changes
            self.look(stop)
            if self._gone_long_enough():
                log.info(
                    "%s has been gone for %.0f s; no longer following it",
                    self.path,
                    self._timing.retire_after,
                )
                self.retired = True
                return
            pacer.looked(woke=woke, news=self.changes != before, trusted=trusted, wake=wake)

    def _directories(self) -> set[str]:
        """The directories whose changes concern this file: the name's, and the real file's when the name is a
        symbolic link (an append to its target is announced in the target's directory only)."""
        found = {self.directory}
        for reader in (self._live, self._old):
            if reader is not None and reader.path:
                found.add(os.path.dirname(reader.path))
        return found

    def _watched(self, watch: DirectoryWatch | None, wake: Wake) -> bool:
        """Has inotify watch every directory that concerns this file (again, after one was deleted and created
        again); True when all of them are watched."""
        if watch is None:
            return False
        covered = True
        for directory in self._directories():
            if directory not in self._listening:
                self._listening.add(directory)
                watch.listen(directory, wake.set)
                wake.set()  # what changed there before the watch began is looked at now
            elif not watch.covers(directory):
                watch.ensure(directory)
            covered = covered and watch.covers(directory)
        return covered

    def supervise(
        self, stop: threading.Event, wake: Wake, pacer: Pacer, watch: DirectoryWatch | None
    ) -> None:
        """Runs the reader loop; an unexpected error (a bug, an odd filesystem) is logged and counted, the state
        says so, and the loop starts again from the last position delivered after a growing pause. A reader never
        dies silently."""
        try:
            self._supervise(stop, wake, pacer, watch)
        finally:
            if not stop.is_set() and not self.retired:
                self.status.failed = self.status.failed or "reader thread ended"

    def _supervise(
        self, stop: threading.Event, wake: Wake, pacer: Pacer, watch: DirectoryWatch | None
    ) -> None:
        pause = self._timing.retry[0]
        while not stop.is_set():
            try:
                self.run(stop, wake, pacer, watch)
                return
            except OSError as err:  # the file or its filesystem failing (an I/O error): the source's trouble
                why = err.strerror or str(err)
                if (STATE_ERROR, why) != (self.status.state, self.status.detail):
                    log.warning(
                        "%s: %s; reading on from the last line counted in %.0f s", self.path, why, pause
                    )
                self._set_state(STATE_ERROR, why)
            except Exception as err:  # a bug: never silent, never healthy, and retried
                log.exception("%s: reader failed; starting it again in %.0f s", self.path, pause)
                self.status.failed = f"reader failed: {err}"
                self._set_state(STATE_ERROR, self.status.failed)
            self._sink.error(self.path)
            # Where the failed reader was: a fresh reader that opened the log at its end and failed before its first
            # line goes on from there, not from the end again (the lines written meanwhile would be skipped).
            self._saved = self._delivered or self.position() or self._saved
            self.close()
            stop.wait(pause)
            pause = min(pause * 2, self._timing.retry[1])

    def close(self) -> None:
        for reader in (self._old, self._live):
            if reader is not None:
                reader.file.close()
        self._old = self._live = None


class FileSource:
    """Follows every file named by a list of paths and globs, each in a reader thread of its own; globs are
    expanded again whenever their directory changes and at the safety net's pace."""

    def __init__(
        self,
        patterns: list[str],
        sink: Sink,
        *,
        max_line_bytes: int,
        from_beginning: bool = False,
        saved: dict[str, FilePosition] | None = None,
        timing: Timing = DEFAULT_TIMING,
        clock: Callable[[], float] = time.monotonic,
        watch: bool = True,
        exclude: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self._patterns = patterns
        self._exclude = exclude
        """Names a glob may match that are not logs (the exporter's own state files)."""
        self._passed_over: set[str] = set()
        """Names not followed, each logged once."""
        self._sink = sink
        self._max_line_bytes = max_line_bytes
        self._from_beginning = from_beginning
        self._saved = dict(saved or {})
        self._timing = timing
        self._clock = clock
        self._files: dict[str, FollowedFile] = {}
        self._wakes: dict[str, Wake] = {}
        self._threads: list[threading.Thread] = []
        self.watch = DirectoryWatch() if watch else None
        self._scan_wake = new_wake()
        self._stop: threading.Event | None = None
        self._lock = threading.Lock()
        self._scan(at_start=True)

    def _expand(self) -> list[str]:
        found: list[str] = []
        for pattern in self._patterns:
            if glob.has_magic(pattern):
                found.extend(
                    sorted(p for p in glob.glob(pattern) if os.path.isfile(p) and not self._exclude(p))
                )
        return found

    def _scan(self, *, at_start: bool) -> list[FollowedFile]:
        """Follows the paths and the globs' matches not followed yet, except names of a file already followed and
        rotated generations of a followed name (followed on their own, the file rotated into one would be read
        again); returns the files added."""
        named = [p for p in self._patterns if not glob.has_magic(p)]
        paths = named + self._expand()
        with self._lock:
            followed = {os.path.realpath(path): path for path in self._files}
            names = [*self._files, *paths]
        added = []
        for path in dict.fromkeys(paths):
            if path in self._files:
                continue
            same = followed.get(os.path.realpath(path))
            directory, base = os.path.split(path)
            older = next(
                (
                    n
                    for n in names
                    if os.path.dirname(n) == directory and rotated(os.path.basename(n), [base])
                ),
                None,
            )
            if same is not None or older is not None:
                if path not in self._passed_over:
                    self._passed_over.add(path)
                    if same is not None:
                        log.warning("%s is the file %s names; following it once", path, same)
                    else:
                        log.info("%s is a rotated generation of %s: read as its backlog, not followed on its own",
                                 path, older)  # fmt: skip
                continue
            new = self._add(path, at_start=at_start)
            if new is not None:
                new.retirable = path not in named
                followed[os.path.realpath(path)] = path
                added.append(new)
        return added

    def _add(self, path: str, *, at_start: bool) -> FollowedFile | None:
        with self._lock:
            if path in self._files:
                return None
            # A file first seen after start holds only lines written since: read it whole.
            followed = FollowedFile(
                path,
                self._sink,
                max_line_bytes=self._max_line_bytes,
                start_at_end=at_start and not self._from_beginning,
                saved=self._saved.pop(path, None),
                timing=self._timing,
                clock=self._clock,
            )
            self._files[path] = followed
            self._wakes[path] = new_wake()
            return followed

    def _reap(self) -> None:
        """Forgets the glob matches whose readers retired them; where each was read to is kept (the most recent
        MAX_RETIRED), so that a name that comes back is resumed, not read again from its start."""
        with self._lock:
            retired = [f for f in self._files.values() if f.retired]
            for followed in retired:
                del self._files[followed.path]
                del self._wakes[followed.path]
        for followed in retired:
            position = followed.last_position()
            if position is not None:
                self._saved.pop(followed.path, None)
                self._saved[followed.path] = position
            while len(self._saved) > MAX_RETIRED:
                del self._saved[next(iter(self._saved))]
            self._sink.retired(followed.path)

    def statuses(self) -> list[SourceStatus]:
        with self._lock:
            return [f.status for f in self._files.values()]

    def files(self) -> list[FollowedFile]:
        with self._lock:
            return list(self._files.values())

    def _start_reader(self, followed: FollowedFile, stop: threading.Event) -> None:
        wake = self._wakes[followed.path]
        thread = threading.Thread(
            target=followed.supervise,
            args=(stop, wake, Pacer(self._timing, self._clock), self.watch),
            name=f"follow {followed.path}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def run(self, stop: threading.Event) -> None:
        """Starts a reader per file, then expands the globs until `stop` is set."""
        self._stop = stop
        if self.watch is not None:
            self.watch.start()
        try:
            for followed in self.files():
                self._start_reader(followed, stop)
            for path in list(
                self._saved
            ):  # saved, and no longer named or matched: kept a while in case it returns
                self._sink.retired(path)
            globs = [p for p in self._patterns if glob.has_magic(p)]
            if globs and self.watch is not None:
                for directory in {os.path.dirname(os.path.abspath(p)) for p in globs}:
                    self.watch.listen(directory, self._scan_wake.set)
            pacer = Pacer(self._timing, self._clock)
            while not stop.is_set():
                if not globs:
                    stop.wait()
                    break
                woke = self._scan_wake.wait(pacer.timeout(self.watch is not None))
                if woke:
                    self._scan_wake.clear()
                self._reap()
                for added in self._scan(at_start=False):
                    if not stop.is_set():
                        self._start_reader(added, stop)
        finally:
            for wake in self._wakes.values():
                wake.set()
            for name in join(self._threads, STOP_SECONDS):
                log.warning("%s did not stop within %.0f s (a read that does not return); stopping without it",
                            name, STOP_SECONDS)  # fmt: skip
            if self.watch is not None:
                self.watch.stop()

    def stop_waking(self) -> None:
        """Wakes every loop so that a set stop event is seen at once."""
        self._scan_wake.set()
        for wake in list(self._wakes.values()):
            wake.set()
