"""The world of the model-based test of the follow-and-checkpoint core (test_follow_model.py).

A log directory that an MTA-like writer and a logrotate-like rotator act on, the exporter's real core built as
`Daemon.run` builds it and driven in-process (no reader threads, no inotify: the test calls each look itself, on a
FakeClock), and the model of what that core must have counted.

The model, exactly:
- Every line written is a Postfix `status=sent` line to Gmail with its own number: a complete line is one
  `gmail_deliveries_total{status="sent"}` and one `gmail_exporter_lines_total`.
- A line is complete once its newline is written. The writer writes a line whole or in two writes (the second one
  later, with anything in between).
- A file is *reachable* while it is on disk under any name (the followed name, a rotated or compressed generation, a
  former symlink target or its generations), or while it is deleted but held open by a running exporter: it was at
  the followed name at one of that exporter's looks.
- After every start and every look, every complete line in a reachable file has been counted, each exactly once.
  A counted line stays counted when its file is truncated or deleted later. A kill -9 goes back to what the last
  state write held; a clean stop writes the state first. So a line is lost only when its file stopped being
  reachable before a look counted it (or before a state write kept it, across a kill).
- An *unterminated last line* is a line the writer left half written in a file it was moved away from (it reopened
  the name after a rotation or a symlink re-pointing). It is counted once the exporter leaves that file: never more
  than once, and exactly once after the final settle (the writer on the live file, the drain grace passed twice, a
  look after each). The writer's own unfinished line in the file it still writes to is not counted.

The environment keeps the rules an MTA and logrotate keep:
- The writer lets go of a rotated file (reopens the name) before the drain grace passes: the clock only advances
  while it writes to the file at the followed name.
- copytruncate and a truncation hold the writer off: they never fall between the two writes of a split line.
- A delete falls between whole lines and the writer stops writing to the deleted file until it reopens the name,
  which creates it again.
- A split falls before `dsn=`, so an unterminated last line is never a delivery: it counts as a line only.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from daemon_harness import sent
from support import FakeClock

from exporter import __version__
from exporter.cli import build_parser
from exporter.daemon import Daemon, make_analyser
from exporter.metrics.families import Collector
from exporter.sources.files import FileSource, FollowedFile
from exporter.sources.identity import FINGERPRINT_BYTES, FileId
from exporter.sources.pacer import DEFAULT_TIMING
from exporter.sources.position import FilePosition
from exporter.sources.reader import TAIL_BYTES
from exporter.state import StateFile, parse

GRACE_PASSED: Final = DEFAULT_TIMING.drain_grace + 1.0
"""A clock step after which a rotated file that did not grow is finished."""
_GENERATION: Final = re.compile(r"\.([0-9]+)(\.gz)?")


def line(n: int) -> bytes:
    """Line n, newline included."""
    return sent(n).encode()


def split_limit(n: int) -> int:
    """The longest first part of a split line n: it ends before `dsn=`, so it is never a delivery on its own."""
    return line(n).index(b", dsn=")


def _created(f: LogFile) -> LogFile:
    assert f.path is not None
    st = os.stat(f.path)
    f.inode = (st.st_dev, st.st_ino)
    return f


@dataclass(eq=False)
class LogFile:
    """One file (inode) of the log, as the model sees it."""

    path: str | None
    """Where it is now; None once deleted."""
    origin: str = ""
    """The path it was created at: files with the same origin are one family of rotated generations."""
    lines: list[int] = field(default_factory=list)
    """Its complete lines, in order."""
    fragment: bytes = b""
    """An unterminated last line the writer left in it."""
    inode: tuple[int, int] = (0, 0)
    """(device, inode) it was created with; a compressed generation keeps the model's file, not the inode."""
    cut_unsaved = False
    """Cut to a middle offset since the last state write that followed a look at the cut."""
    cut_seen = False
    """A look saw that cut (the exporter holds the position at the cut, to be written)."""
    written_after_cut = False

    def __repr__(self) -> str:
        return f"LogFile({self.path!r}, {len(self.lines)} lines{', fragment' if self.fragment else ''})"


class World:
    """The log's files on disk, the writer (an MTA holding its log open) and the rotator acting on them, kept in step
    with the model's view of them."""

    def __init__(self, root: str, *, link: bool) -> None:
        self.root = root
        self.name = os.path.join(root, "log", "mail.log")
        """The followed name: the log itself, or a symbolic link to it in another directory (`link`)."""
        self.state_path = os.path.join(root, "state", "state.json")
        self.link = link
        self.files: list[LogFile] = []
        self.next_line = 0
        self.writer_fd: int | None = None
        self.writer_file: LogFile | None = None
        self.pending: tuple[int, int] | None = None
        """The writer's unfinished line: (its number, how many of its bytes are written)."""
        self.targets = 0
        self._kept: list[int] = []
        self.state_lines: Counter[bytes] = Counter()
        """What the state file's counters hold, line by line (kept by the spy of `Exporter`)."""
        os.makedirs(os.path.dirname(self.name))
        if link:
            self._point_link(self._target(0))

    # -- where things are --

    def _target(self, k: int) -> str:
        return os.path.join(self.root, "targets", f"t{k}", "mail.log")

    def _point_link(self, target: str) -> None:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = os.path.join(os.path.dirname(self.name), ".link.tmp")
        os.symlink(target, tmp)
        os.replace(tmp, self.name)

    def real(self) -> str:
        """The path the followed name leads to."""
        return os.readlink(self.name) if self.link else self.name

    def live(self) -> LogFile | None:
        """The file at the followed name, if any."""
        real = self.real()
        return next((f for f in self.files if f.path == real), None)

    def writer_elsewhere(self) -> bool:
        """The writer is closed or still writes to a file that is no longer at the followed name."""
        return self.writer_fd is None or self.writer_file is not self.live()

    def pending_in_live(self) -> bool:
        """The file at the name holds the writer's unfinished line (a truncation must wait for it)."""
        return self.pending is not None and self.writer_file is not None and self.writer_file is self.live()

    def compressible(self) -> list[LogFile]:
        """Plain rotated generations the writer no longer holds."""
        return [
            f
            for f in self.files
            if f.path is not None
            and f is not self.writer_file
            and _GENERATION.fullmatch(f.path[len(f.origin) :])
            and not f.path.endswith(".gz")
        ]

    def reachable(self, held: set[LogFile]) -> list[LogFile]:
        return [f for f in self.files if f.path is not None or f in held]

    def fragments(self) -> list[bytes]:
        """Unterminated last lines in files on disk (the writer never leaves one in a file it deletes)."""
        return [f.fragment for f in self.files if f.fragment and f.path is not None]

    def written(self) -> int:
        return self.next_line

    def saved_position(self) -> FilePosition | None:
        """Where the state file says the log resumes."""
        try:
            with open(self.state_path, "rb") as f:
                _, snapshot = parse(json.load(f))
        except FileNotFoundError:
            return None
        position = snapshot.positions.get(self.name)
        assert position is None or isinstance(position, FilePosition)
        return position

    def file_of(self, ident: FileId) -> LogFile | None:
        return next((f for f in self.files if f.inode == (ident.dev, ident.ino)), None)

    # -- the writer --

    def _write(self, data: bytes) -> None:
        assert self.writer_fd is not None and self.writer_file is not None
        if self.writer_file.cut_unsaved:
            self.writer_file.written_after_cut = True
        view = memoryview(data)
        while view:
            view = view[os.write(self.writer_fd, view) :]

    def _new_line(self) -> int:
        n = self.next_line
        self.next_line += 1
        return n

    def _finish_pending(self) -> None:
        if self.pending is None:
            return
        n, written = self.pending
        self._write(line(n)[written:])
        assert self.writer_file is not None
        self.writer_file.lines.append(n)
        self.pending = None

    def append(self, count: int) -> None:
        """Writes `count` whole lines in one write (finishing a split line first)."""
        self._finish_pending()
        numbers = [self._new_line() for _ in range(count)]
        self._write(b"".join(line(n) for n in numbers))
        assert self.writer_file is not None
        self.writer_file.lines.extend(numbers)

    def append_split(self, first: int) -> None:
        """Writes the first `first` bytes of a new line (at most `split_limit`); the rest comes with the next write."""
        self._finish_pending()
        n = self._new_line()
        first = min(first, split_limit(n))
        self._write(line(n)[:first])
        self.pending = (n, first)

    def reopen(self) -> None:
        """The MTA reopens its log by name (a HUP after rotation), creating it when missing. A line it had half
        written to the file it leaves stays there, unterminated."""
        live = self.live()
        if self.writer_fd is not None:
            os.close(self.writer_fd)
            if self.pending is not None and self.writer_file is not live:
                n, written = self.pending
                assert self.writer_file is not None
                self.writer_file.fragment = line(n)[:written]
                self.pending = None
        self.writer_fd = os.open(self.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if live is None:
            live = _created(LogFile(self.real(), self.real()))
            self.files.append(live)
        self.writer_file = live

    def close_writer(self) -> None:
        if self.writer_fd is not None:
            os.close(self.writer_fd)
        self.writer_fd = self.writer_file = None

    def close(self) -> None:
        self.close_writer()
        for fd in self._kept:
            os.close(fd)
        self._kept = []

    def _unlink(self, path: str) -> None:
        """Removes a file, keeping its inode allocated until `close`: an inode number the filesystem handed out again
        would make two files of one sequence look alike to the core and to the model, differently from run to run."""
        self._kept.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        os.unlink(path)

    # -- the rotator --

    def _shift(self) -> None:
        """name.N -> name.N+1 (compressed or not), newest last, like logrotate."""
        real = self.real()
        numbered = []
        for f in self.files:
            if f.path is not None and f.path.startswith(real):
                found = _GENERATION.fullmatch(f.path[len(real) :])
                if found:
                    numbered.append((int(found.group(1)), found.group(2) or "", f))
        for number, gz, f in sorted(numbered, key=lambda item: item[0], reverse=True):
            new = f"{real}.{number + 1}{gz}"
            assert f.path is not None
            os.rename(f.path, new)
            f.path = new

    def rotate_rename(self) -> None:
        """logrotate `create`: the log becomes name.1 and an empty log is created; the writer goes on writing to
        name.1 until it reopens."""
        live = self.live()
        assert live is not None
        real = self.real()
        self._shift()
        os.rename(real, f"{real}.1")
        live.path = f"{real}.1"
        os.close(os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        self.files.append(_created(LogFile(real, real)))

    def copytruncate(self) -> None:
        """logrotate `copytruncate`, the writer held off: the log is copied to name.1, then emptied."""
        live = self.live()
        assert live is not None and not self.pending_in_live()
        real = self.real()
        self._shift()
        shutil.copyfile(real, f"{real}.1")
        os.truncate(real, 0)
        self.files.append(_created(LogFile(f"{real}.1", real, list(live.lines))))
        live.lines = []

    def cuts(self) -> range:
        """How many lines a cut to a middle offset may keep: at least the first FINGERPRINT_BYTES (the first bytes
        unchanged), at least one line less than the log holds. The limit *Far cut* (docs/reliability.md) is not
        reached: a log stays shorter than the TAIL_BYTES the reader keeps (`truncate` checks)."""
        live = self.live()
        if live is None or self.pending_in_live():
            return range(0)
        size, first = 0, len(live.lines)
        for k, n in enumerate(live.lines, 1):
            size += len(line(n))
            if size >= FINGERPRINT_BYTES:
                first = k
                break
        return range(first, len(live.lines))

    def truncate(self, keep: int) -> None:
        """Cuts the log after its first `keep` lines (one of `cuts()`)."""
        live = self.live()
        assert live is not None and keep in self.cuts()
        assert os.path.getsize(self.real()) < TAIL_BYTES
        os.truncate(self.real(), sum(len(line(n)) for n in live.lines[:keep]))
        del live.lines[keep:]
        # Lines written after an earlier cut that no state write followed may be among those kept: the limit holds
        # for them until a state write follows a look at this cut.
        live.written_after_cut = live.cut_unsaved and live.written_after_cut
        live.cut_unsaved, live.cut_seen = True, False

    def delete(self) -> None:
        """Deletes the log; the writer finishes its line and stops writing until it reopens the name."""
        live = self.live()
        assert live is not None
        if self.writer_file is live:
            self._finish_pending()
            self.close_writer()
        self._unlink(self.real())
        live.path = None

    def compress(self, f: LogFile) -> None:
        """gzip of a rotated generation the writer let go of (delaycompress); the plain file is removed."""
        assert f.path is not None
        with open(f.path, "rb") as src, gzip.open(f"{f.path}.gz", "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
        self._unlink(f.path)
        f.path = f"{f.path}.gz"

    def repoint(self) -> None:
        """The followed symbolic link is pointed at a new, empty file in another directory (a new container); the
        writer goes on writing to the old one until it reopens."""
        assert self.link
        self.targets += 1
        target = self._target(self.targets)
        os.makedirs(os.path.dirname(target))
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        self.files.append(_created(LogFile(target, target)))
        self._point_link(target)


class Exporter:
    """One exporter process's core, built as `Daemon.run` builds it (`Daemon.assemble` on the locked state file),
    without the web server, the reader threads or inotify: `start` and `look` are called here, in this thread.

    `delivered` records, line by line, what the real ingest stage was handed (a spy in front of `Ingest.block`), and
    each state write copies it to `world.state_lines`, so that a failure names the lines counted twice or missing;
    the exporter's own counters are compared with the model too."""

    def __init__(self, world: World, clock: FakeClock) -> None:
        self.world = world
        args = build_parser("run").parse_args(
            ["run", "--log.path", world.name, "--state.file", world.state_path]
        )
        self.daemon = Daemon(args, clock=clock, watch=False)
        self.cfg, self.rules, _ = self.daemon.load()
        self.state = StateFile(self.cfg.state_file)
        self.state.lock()
        self.metrics = self.daemon.assemble(self.cfg, self.rules, self.state)
        checkpointer = self.daemon.checkpointer
        ingest = self.daemon.ingest
        assert checkpointer is not None and ingest is not None
        self.checkpointer = checkpointer
        self.collector = Collector(
            self.metrics,
            version=__version__,
            statuses=self.daemon.statuses,
            state_write_errors=lambda: checkpointer.write_errors,
        )
        self.delivered = Counter(world.state_lines)
        self.flushes = 0
        """State writes so far (the daemon's loop writes at once when a start position is due)."""
        block = ingest.block

        def spy(source: str, data: bytes, nbytes: int, position: object, **kw: object) -> None:
            self.delivered.update(data.split(b"\n")[:-1])
            block(source, data, nbytes, position, **kw)  # type: ignore[arg-type]

        ingest.block = spy  # type: ignore[method-assign]
        (source,) = self.daemon.sources
        assert isinstance(source, FileSource)
        self.followed: list[FollowedFile] = source.files()
        self.stop_event = threading.Event()
        checkpointer.changed(urgent=True)  # as Daemon.run does before starting its sources
        for followed in self.followed:
            followed.start(self.stop_event)
        self._catch_up()

    def _catch_up(self) -> None:
        """The daemon's loop writes an urgent change (where following began) at once, before /-/ready."""
        if not self.checkpointer.caught_up():
            self.flush()

    def look(self) -> None:
        for followed in self.followed:
            followed.look(self.stop_event)
        self._catch_up()

    def flush(self) -> None:
        assert self.checkpointer.flush(), self.checkpointer.last_error
        self.flushes += 1
        self.world.state_lines = Counter(self.delivered)

    def reload(self) -> None:
        ingest = self.daemon.ingest
        assert ingest is not None
        ingest.replace_analysers(lambda: make_analyser(self.cfg, self.rules))

    def stop(self) -> None:
        """SIGTERM: the final state write, then exit."""
        self.stop_event.set()
        self.flush()
        self._exit()

    def kill(self) -> None:
        """kill -9: everything in memory is gone."""
        self._exit()

    def _exit(self) -> None:
        for followed in self.followed:
            followed.close()
        self.state.unlock()

    def value(self, name: str, **labels: str) -> float:
        found = [
            sample.value
            for family in self.collector.collect()
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        ]
        assert len(found) == 1, (name, labels, found)
        return float(found[0])

    def position(self) -> FilePosition | None:
        """Where the running exporter would resume if its state were written now."""
        ingest = self.daemon.ingest
        assert ingest is not None
        position = ingest.position(self.world.name)
        assert position is None or isinstance(position, FilePosition)
        return position

    def sent(self) -> float:
        return self.value("gmail_deliveries_total", status="sent")

    def lines(self) -> float:
        return self.value("gmail_exporter_lines_total", source=self.world.name)

    def held_lines(self) -> int:
        """Lines of free text (an unterminated last line) the analyser holds back until the block that may continue
        their entry: delivered, not counted yet."""
        ingest = self.daemon.ingest
        assert ingest is not None
        held = str(ingest.snapshot().memory.get(self.world.name, {}).get("held", ""))
        return held.count("\n") + 1 if held else 0
