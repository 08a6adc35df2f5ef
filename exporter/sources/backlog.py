"""Resuming a followed file: what was written while the exporter was down is read before anything new.

The saved file is found again by inode (or, for a copy or a compressed generation, by its first bytes) among the
log's name, its rotated generations (beside the file a symbolic link leads to) and, for a symbolic link re-pointed
meanwhile, the generations beside the file the link pointed to. It is read from the saved offset, then every newer
generation oldest first, then the live file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace

from exporter.compressed import COMPRESSED_SUFFIXES, READ_ERRORS, damaged
from exporter.sources import generations
from exporter.sources.identity import (
    ABSENT,
    FINGERPRINT_BYTES,
    FileId,
    fingerprint,
    head,
    matches,
    open_generation,
)
from exporter.sources.position import FilePosition
from exporter.sources.reader import Reader, line_end_before, open_plain, open_saved

log = logging.getLogger(__name__)

Deliver = Callable[[Reader, bytes, Callable[[], FilePosition]], None]
"""Hands a block read from `reader` to the sink with the position that follows it (asked once the reader has moved
past the block)."""


def _has_inode(path: str, dev: int, ino: int) -> bool:
    """Whether the file at `path` is the one with inode `ino` of device `dev` (False when none is there)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _inode_of(path: str, position: FilePosition) -> bool:
    """Whether `path` is the file of `position` by its inode."""
    return _has_inode(path, position.ident.dev, position.ident.ino)


def _first_bytes(path: str) -> bytes:
    with open_generation(path) as f:
        return head(f)


class Backlog:
    """Reads the backlog of one followed file and opens its live file where reading goes on."""

    def __init__(
        self,
        name: str,
        max_line_bytes: int,
        deliver: Deliver,
        stop: threading.Event,
        *,
        target: str = "",
        previous: tuple[Reader, Callable[[], FilePosition]] | None = None,
    ) -> None:
        self.name = name
        self._max_line_bytes = max_line_bytes
        self._deliver = deliver
        self._stop = stop
        self._families = self._families_of(target)
        self._previous = previous
        """The newest plain rotated file read so far, left open with its unterminated last line held (and its
        position): the MTA may still append to it until it reopens its log, so the follower drains it like a file it
        saw rotated. Finished as soon as a newer generation is read."""
        self._truncated: FileId | None = None
        """The file a copy read at resume was copied from, truncated since: read whole when it is a generation."""

    @property
    def previous(self) -> Reader | None:
        return None if self._previous is None else self._previous[0]

    def let_go(self) -> None:
        """Finishes the previous file (a newer generation exists, so the MTA has moved on): its unterminated last
        line counts as a line."""
        if self._previous is None:
            return
        reader, position = self._previous
        self._previous = None
        try:
            if not self._stop.is_set():
                self._deliver(reader, reader.splitter.flush(), position)
        finally:
            reader.file.close()

    def close(self) -> None:
        """Closes the previous file without delivering its held line (reading starts again from before it)."""
        if self._previous is not None:
            self._previous[0].file.close()
            self._previous = None

    def _candidates(self, saved: FilePosition) -> list[str]:
        """Where a saved file may be now, likeliest first (a copy or a compressed generation is found by its first
        bytes, which a short fingerprint shares with other files): where it was found when saved and the generations
        of its family (compressed or shifted since), then the name, the file it leads to and their generations (a
        symbolic link re-pointed while the exporter was down)."""
        found = []
        if saved.path:
            found.append(saved.path)
            live = generations.family(saved.path)
            siblings = generations.siblings(live or saved.path)
            if live is not None:
                # Rotation only ages a file: it is where it was saved or older, and nearest first. A compressed
                # generation found by a few first bytes could otherwise be an older file that starts the same.
                base = os.path.basename(live)
                saved_age = generations.age(base, os.path.basename(saved.path))
                older = [p for p in siblings if generations.age(base, os.path.basename(p)) <= saved_age]
                siblings = older[::-1] + [p for p in siblings if p not in older]
            found.extend(siblings)
        found.extend(path for live in self._families for path in (live, *generations.siblings(live)))
        return list(dict.fromkeys(found))

    def locate(self, saved: FilePosition, *, other: FileId | None = None) -> str | None:
        """Where the file of a saved position is now, or None when it is gone. `other`: a file known to be another
        one (the main file of a position whose drained file is looked for), never taken for it."""
        ident = saved.ident
        at_name = self._at_name()
        by_fingerprint = None
        for candidate in self._candidates(saved):
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            # The live file (by its name or the path a symbolic link leads to) shorter than the saved offset was
            # truncated: a copy of what was read is looked for among the generations (copytruncate).
            # A file known by no byte yet is known by its inode alone, which a compressed generation (a new file)
            # has only when the inode was freed and given again.
            by_inode = not candidate.endswith(COMPRESSED_SUFFIXES) or saved.path.endswith(COMPRESSED_SUFFIXES)
            if (
                other is not None
                and other.same_inode(st)
                and (matches(candidate, other) if other.fingerprint_len else by_inode)
            ):
                continue
            live = at_name is not None and (st.st_dev, st.st_ino) == (at_name.st_dev, at_name.st_ino)
            fits = not live or st.st_size >= saved.offset
            if (
                fits
                and ident.same_inode(st)
                and (matches(candidate, ident) if ident.fingerprint_len else by_inode)
            ):
                return self.name if live else candidate  # the live file, by whichever path it was found
            if by_fingerprint is None and not live and matches(candidate, ident):
                by_fingerprint = candidate
        return by_fingerprint

    def _at_name(self) -> os.stat_result | None:
        try:
            return os.stat(self.name)
        except OSError:
            return None

    def _cut(self, saved: FilePosition) -> Reader | None:
        """The live file opened after its last line when it is the saved file cut to a middle offset (shorter than
        the saved offset, its first bytes unchanged, no copy of it anywhere); else None. Lines written after the cut
        and before this restart cannot be told from the lines kept, so reading goes on after the last line."""
        at_name = self._at_name()
        if at_name is None or not saved.ident.same_inode(at_name) or not matches(self.name, saved.ident):
            return None
        reader = open_plain(self.name, 0, self._max_line_bytes)
        offset = line_end_before(reader.file.fileno(), os.fstat(reader.file.fileno()).st_size)
        reader.file.close()
        log.warning(
            "%s: truncated to a middle offset since the position was saved; reading on after its last line",
            self.name,
        )
        return open_plain(self.name, offset, self._max_line_bytes)

    def _read_to_end(self, reader: Reader, position: Callable[[], FilePosition]) -> None:
        while not self._stop.is_set():
            data = reader.read_chunk()
            if not data:
                break
            self._deliver(reader, reader.splitter.feed(data), position)

    def _drain(self, path: str, saved: FilePosition, main: FilePosition | None) -> None:
        """Reads `path`, where `saved` was found, from the saved offset to its end, after finishing the previous
        file. A plain file stays open as the previous one; a compressed one (the MTA let go of it) is finished, its
        unterminated last line counting as a line. With `main`, the position stays `main` with this file as the one
        being drained. A compressed file whose data is damaged is read up to the damage; the rest of it is skipped,
        never retried for ever."""
        self.let_go()
        try:
            reader = open_saved(path, saved, self._max_line_bytes)
        except READ_ERRORS as err:
            self._skip_damaged(path, err)
            return

        def position() -> FilePosition:
            return reader.position() if main is None else replace(main, draining=reader.position())

        self._previous = (reader, position)
        try:
            self._read_to_end(reader, position)
        except READ_ERRORS as err:
            self.close()
            if reader.plain:
                raise
            self._skip_damaged(path, err)
            return
        except BaseException:
            self.close()
            raise
        if not reader.plain:
            self.let_go()

    def _skip_damaged(self, path: str, err: BaseException) -> None:
        """Logs a compressed file whose data is damaged (it will never read); raises `err` for anything else."""
        if not (path.endswith(COMPRESSED_SUFFIXES) and damaged(err)):
            raise err
        log.warning("%s: %s is damaged (%s); the rest of it cannot be read", self.name, path, err)

    def resume(self, saved: FilePosition) -> Reader | None:
        """Reads the backlog and returns the live file opened where reading goes on (None when the name cannot be
        opened now; the follower then opens it like a late file). Raises OSError."""
        main = replace(saved, draining=None)
        self._families = self._families_of(saved.path)
        if saved.draining is not None:
            found = self.locate(saved.draining, other=main.ident)
            if found is None:
                log.warning(
                    "%s: a rotated file being drained at shutdown is gone; its tail is lost", self.name
                )
            else:
                self._drain(found, saved.draining, main)
        if self._stop.is_set():
            return None
        if main.ident == ABSENT:
            return self._open_live()
        # The file being drained is another one than the main file, which a few first bytes may not tell.
        found = self.locate(main, other=None if saved.draining is None else saved.draining.ident)
        if found == self.name:
            return open_plain(self.name, main.offset, self._max_line_bytes, discarding=main.discarding)
        if found is None and (cut := self._cut(main)) is not None:
            return cut
        if found is None:
            log.warning(
                "%s: the file of the saved position is gone; reading the current file from its start",
                self.name,
            )
            return self._open_live()
        self._drain(found, main, None)
        if not _inode_of(found, main):
            # Found by its first bytes: a copy. The file it was copied from was truncated and may have been renamed
            # since; the MTA may still write to it, so it is read from its start even when empty.
            self._truncated = main.ident
        consumed = {main.ident.fingerprint}
        last = main
        while not self._stop.is_set():
            last = self.drain_newer(last, consumed)
            if self._stop.is_set():
                return None
            live = self._open_live()
            # The MTA may rotate while we read the backlog: then the file we meant to open next is a generation
            # now, and the name holds a later one. Read those first.
            if live is None or self._unread_generation(last, consumed) is None:
                return live
            live.file.close()
        return None

    def _open_live(self) -> Reader | None:
        try:
            return open_plain(self.name, 0, self._max_line_bytes)
        except FileNotFoundError:
            return None

    def _families_of(self, target: str) -> list[str]:
        """The live files whose generations the backlog may span: the name, the file it leads to now (the target of
        a symbolic link, beside which its rotated generations are) and `target`, the file it led to when the position
        was taken (a link re-pointed since)."""
        return list(dict.fromkeys(p for p in (self.name, os.path.realpath(self.name), target) if p))

    def _unread_generation(
        self, last: FilePosition, consumed: set[str], until: os.stat_result | None = None
    ) -> tuple[str, bytes] | None:
        """The oldest generation newer than the file of `last` and not read yet: (path, first bytes); None from the
        file `until` on, when it is a generation."""
        found = self.locate(last)
        if found is None or found == self.name:
            return None
        for live in self._families:
            directory, base = os.path.split(live)
            name = os.path.basename(found)
            if os.path.dirname(found) != directory or (
                name != base and not generations.rotated(base, [name])
            ):
                continue
            if name == base:
                return None  # the family's live file: nothing of that family is newer
            newer_names = generations.newer_than(base, name, generations.listing(directory))
            if os.path.realpath(live) != os.path.realpath(self.name):
                newer_names.append(
                    base
                )  # a symbolic link's former target: it was written after its generations
            for newer in newer_names:
                path = os.path.join(directory, newer)
                if until is not None and _has_inode(path, until.st_dev, until.st_ino):
                    return None
                try:
                    first = _first_bytes(path)
                except READ_ERRORS:
                    continue
                if (
                    not first
                    and self._truncated is not None
                    and _has_inode(path, self._truncated.dev, self._truncated.ino)
                ):
                    self._truncated = None
                    return path, first
                if first and fingerprint(first) not in consumed and not self._same_as_live(path, first):
                    return path, first
            return None
        return None

    def drain_newer(
        self,
        last: FilePosition,
        consumed: set[str],
        *,
        skipped: bool = False,
        until: os.stat_result | None = None,
    ) -> FilePosition:
        """Reads, oldest first, the generations newer than the file of `last` that were not read yet, looking the
        generations up again after each one (names move when the MTA rotates meanwhile). Returns the position of
        the last file read. `skipped`: these were created and rotated away between two looks. `until`: a file (by
        its inode) that ends the generations to read, itself left out."""
        while not self._stop.is_set():
            unread = self._unread_generation(last, consumed, until)
            if unread is None:
                break
            path, first = unread
            if skipped:
                log.warning("%s: %s was created and rotated between two looks; reading it", self.name, path)
            fp = fingerprint(first)
            consumed.add(fp)
            st = os.stat(path)
            last = FilePosition(FileId(st.st_dev, st.st_ino, fp, len(first)), 0, path=os.path.realpath(path))
            self._drain(path, last, None)
        return last

    def drain_made_since(self, newest: FilePosition | None, consumed: set[str]) -> None:
        """Reads, oldest first, the generations made since `newest` was the newest one (every generation when there
        was none), leaving out those whose first bytes are in `consumed` or the live file's: after a rotation that
        deleted the file being read, which no generation is to count from."""
        if newest is not None:
            found = self.locate(newest)
            # A few first bytes name no file for sure: a generation found only by them may be another one.
            if found is not None and (
                newest.ident.fingerprint_len >= FINGERPRINT_BYTES or _inode_of(found, newest)
            ):
                self.drain_newer(newest, consumed, skipped=True)
            return
        directory, base = os.path.split(self._families[-1])
        for name in generations.oldest_first(base, generations.listing(directory)):
            path = os.path.join(directory, name)
            try:
                first = _first_bytes(path)
            except READ_ERRORS:
                continue
            if first and fingerprint(first) not in consumed and not self._same_as_live(path, first):
                log.warning("%s: %s was created and rotated between two looks; reading it", self.name, path)
                consumed.add(fingerprint(first))
                st = os.stat(path)
                last = FilePosition(
                    FileId(st.st_dev, st.st_ino, fingerprint(first), len(first)), 0, path=path
                )
                self._drain(path, last, None)
                self.drain_newer(last, consumed, skipped=True)
                return

    def _same_as_live(self, path: str, first: bytes) -> bool:
        """Whether the generation at `path`, which begins with `first`, holds what the live file holds: the live file
        itself, or a copy of it that copytruncate has not truncated yet. Only a whole fingerprint tells a copy: a
        generation shorter than that (an unterminated fragment, one line) may begin the live file by chance."""
        try:
            live = os.stat(self.name)
            if _has_inode(path, live.st_dev, live.st_ino):
                return True
            if len(first) < FINGERPRINT_BYTES:
                return False
            with open_generation(self.name) as f:
                return head(f, len(first)) == first
        except OSError:
            return False
