"""`report --jobs N`: plain log files cut at line boundaries into pieces that forked processes summarise at once,
merged in log order into exactly the report one process reading every line would make.

Two things cross a cut. The syslog year rule: each piece starts without the log's past, records the year it
inferred for each new stamp, and the parent replays the rule over those records from the state the earlier
pieces left, at each cut and wherever a join below adds a line. The queue-id joins: each piece records the queue
ids it remembered and the `status=expired` lines whose deferral it did not see, in order, and the parent replays
the bounded join over the memory the earlier pieces left. Cuts are put where no entry of free text can go on
across them. Whatever the replay cannot vouch for (a year that comes out differently, an OpenSMTPD session that
began before the cut) has its piece summarised again in the parent, from the exact state: slower, never wrong."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import os
import pickle
import re
import selectors
import signal
import stat
import struct
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from exporter.analyse import MAX_LINE_BYTES, NEARBY_LINES, Analyser
from exporter.children import die_with_parent
from exporter.compressed import DECOMPRESSING, READ_ERRORS, open_log
from exporter.errors import WorkerError
from exporter.events import Event
from exporter.mta.common import BoundedMap, Context
from exporter.offline import Progress, Report, summarise
from exporter.timestamps import TimestampParser

MIN_PIECE_BYTES: Final = 8 << 20
"""Below this many bytes per process, forking and merging cost more than the second core saves."""
PIECES_PER_JOB: Final = 4
"""Pieces per process: one slowed by other work on the machine leaves more of them to the others."""
CLEAN_LINES: Final = NEARBY_LINES + 1
"""Lines before a cut that must be an MTA's own (or blank): then no entry of free text is held open across the
cut and no free text still lends a Google host to the lines after it."""
CUT_SEARCH_BYTES: Final = 1 << 20
"""How far past its nominal place a cut is looked for before that cut is given up."""
TRACE_WINDOW: Final = 256
"""Year records a piece sends after its start and after each unresolved expiry: a replay converges within a
record or two, and one that needs more has its piece summarised again."""
_JOIN: Final = "google_queue_ids"
_LOOKUP_MAPS: Final = ("addresses", "sessions", "last_replies")
"""OpenSMTPD's joins: a piece that looks up a key the earlier pieces left is summarised again (rare: it needs
an OpenSMTPD session that the cut splits)."""


@dataclass(frozen=True, slots=True)
class Piece:
    """A run of whole lines of one file: bytes start..end (None: to the end of the file as it is read)."""

    path: str
    start: int
    end: int | None
    last: bool
    """The file's last piece: the analyser is flushed at its end."""
    local: bool = False
    """A whole file too small to pay for a process: read by the parent, in its place."""

    def describe(self) -> str:
        end = "end" if self.end is None else str(self.end)
        return f"{self.path} (bytes {self.start}..{end})"


def _splittable(path: str) -> int | None:
    """The size of a plain regular file, None for anything read as a stream (compressed, a pipe, stdin). A pipe
    is not opened here: its writer would lose what it wrote before the real read."""
    if path == "-":
        return None
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        return None
    with open_log(path) as stream:
        return None if isinstance(stream, DECOMPRESSING) else info.st_size


def safe_cut(path: str, nominal: int, analyser: Analyser) -> int | None:
    """The first line boundary at or after `nominal` that the CLEAN_LINES lines before it make safe, or None
    within CUT_SEARCH_BYTES."""
    base = max(0, nominal - CLEAN_LINES * (MAX_LINE_BYTES + 2))
    with open(path, "rb") as f:
        f.seek(base)
        window = f.read(nominal - base + CUT_SEARCH_BYTES)
    at = nominal - base
    while True:
        newline = window.find(b"\n", max(at - 1, 0))
        if newline < 0 or newline + 1 >= len(window):
            return None
        cut = newline + 1
        if _clean_before(window, cut, analyser, whole=base == 0):
            return base + cut
        at = cut + 1


def _clean_before(window: bytes, cut: int, analyser: Analyser, *, whole: bool) -> bool:
    """Whether the CLEAN_LINES lines before `cut` are an MTA's own or blank (`whole`: the window starts the file)."""
    end = cut - 1  # the newline that ends the line before the cut
    for _ in range(CLEAN_LINES):
        start = window.rfind(b"\n", 0, end) + 1
        if start == 0 and not whole:
            return False  # the line may begin before the window
        line = window[start:end]
        if len(line) > MAX_LINE_BYTES or b"\x00" in line or (line.strip() and not analyser.mta_line(line)):
            return False
        if start == 0:
            return True  # the first line of the file
        end = start - 1
    return True


def plan(
    paths: Sequence[str], jobs: int, analyser: Analyser, min_piece_bytes: int = MIN_PIECE_BYTES
) -> list[Piece] | None:
    """The pieces to summarise at once, in log order, or None when one process should read everything: one
    job, stdin among the files, or too few plain bytes to pay for a second process."""
    if jobs < 2 or "-" in paths:
        return None
    sizes = [_splittable(path) for path in paths]
    plain = sum(size for size in sizes if size is not None)
    if plain < 2 * min_piece_bytes:
        return None
    target = max(min_piece_bytes, plain // (jobs * PIECES_PER_JOB))
    pieces: list[Piece] = []
    for path, size in zip(paths, sizes, strict=True):
        if size is None or size < min_piece_bytes // 4:
            pieces.append(Piece(path, 0, None, last=True, local=size is not None))
            continue
        cuts: list[int] = []
        count = max(1, round(size / target))
        for i in range(1, count):
            cut = safe_cut(path, size * i // count, analyser)
            if cut is not None and (not cuts or cut > cuts[-1]) and cut < size:
                cuts.append(cut)
        starts = [0, *cuts]
        ends: list[int | None] = [*cuts, None]
        pieces += [Piece(path, s, e, last=e is None) for s, e in zip(starts, ends, strict=True)]
    return pieces if sum(not piece.local for piece in pieces) > 1 else None


# --- What a piece records ---------------------------------------------------------------------------------------


class RecordingClock(TimestampParser):
    """The year rule as a piece runs it: the stamps it infers a year for, numbered, each with its time and the
    latest time after it. Only the records the parent may replay are kept: after the start and after each mark()."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.kept: dict[int, tuple[bytes, float | None, float | None]] = {}
        self._last: tuple[bytes, float | None, float | None] | None = None
        self._keep_until = TRACE_WINDOW

    def _infer(self, m: re.Match[bytes]) -> float | None:
        value = super()._infer(m)
        self._last = (m.group(0), value, self._latest)
        if self.count < self._keep_until:
            self.kept[self.count] = self._last
        self.count += 1
        return value

    def mark(self) -> None:
        """The parent may add a line here: keep the record before it and the next ones, and drop the remembered
        last stamp, which changes no result (it is inferred again as it was) but has the next stamp recorded."""
        if self._last is not None:
            self.kept[self.count - 1] = self._last
        self._keep_until = max(self._keep_until, self.count + TRACE_WINDOW)
        self.restore(self.state())


def stamp_of(line: bytes) -> tuple[bytes | None, float | None]:
    """The syslog stamp the clock would infer a year for in `line`, or None and the time of its other stamp."""
    probe = RecordingClock()
    value = probe.parse(line)
    return (probe.kept[0][0], None) if probe.count else (None, value)


@dataclass(frozen=True, slots=True)
class Expiry:
    """A `status=expired` line whose queue id the piece had not seen deferred by Google."""

    queue_id: str
    remembered: int
    """How many ids the piece had remembered before it."""
    traced: int
    """How many year records the piece had made before it."""
    stamp: bytes | None
    other_time: float | None
    line: bytes


MAX_RECORDED: Final = 1_000_000
"""Keys a join's memory records at most in a piece (a few MB); past that its replay gives up."""


class RecordingMap(BoundedMap):
    """A join's memory in a piece: the keys it remembered (in order, when `ops`), removed and looked up in vain
    (when `lookups`), up to its first eviction: from then on the earlier pieces' keys are forgotten anyway."""

    def __init__(
        self,
        limit: int,
        *,
        ops: bool = False,
        lookups: bool = False,
        on_miss: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(limit)
        self.touched: set[str] = set()
        self.ops: list[str] | None = [] if ops else None
        self.missed: set[str] = set()
        self.removed: set[str] = set()
        self.evicted = False
        self.overflow = False
        self._lookups = lookups
        self._on_miss = on_miss
        self._keys: dict[str, str] = {}

    def remember(self, key: str, value: str) -> None:
        if not self.evicted:
            key = self._keys.setdefault(key, key)
            self.touched.add(key)
            if self.ops is not None:
                self.ops.append(key)
                self.overflow = self.overflow or len(self.ops) > MAX_RECORDED
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.limit:
            self.popitem(last=False)
            self.evicted = True
            self.ops, self._keys = None, {}

    def __contains__(self, key: object) -> bool:
        found = super().__contains__(key)
        if not found and isinstance(key, str) and self._on_miss is not None and not self.evicted:
            self._on_miss(key)
        return found

    def get(self, key: str, default: Any = None) -> Any:
        if self._lookups and not super().__contains__(key):
            self._note(self.missed, key)
        return super().get(key, default)

    def pop(self, key: str, default: Any = None) -> Any:
        if self._lookups:
            self._note(self.removed, key)
        if not self.evicted:
            self.touched.add(key)
        return super().pop(key, default)

    def _note(self, keys: set[str], key: str) -> None:
        if len(keys) < MAX_RECORDED:
            keys.add(key)
        else:
            self.overflow = True


_MAPS: Final = ("senders", _JOIN, *_LOOKUP_MAPS)


@dataclass
class PieceResult:
    """What a piece sends back: its summary, its joins' final memory and what the parent replays."""

    report: Report
    maps: dict[str, list[list[str]]]
    touched: dict[str, set[str] | None]
    """Keys remembered or removed; None when the map evicted (then it holds only the piece's newest keys)."""
    missed: dict[str, set[str]]
    removed: dict[str, set[str]]
    overflow: bool
    expiries: list[Expiry]
    remembered: list[str]
    """Queue ids remembered, up to the last expiry."""
    holding: bool
    """The piece ended inside free text that the next piece goes on with (see safe_cut): both are read again."""
    trace: dict[int, tuple[bytes, float | None, float | None]]
    """Year records by number: those after the start and after each expiry, within TRACE_WINDOW."""
    traced: int
    latest: float | None


def record(ctx: Context) -> Callable[[Report, bool], PieceResult]:
    """Puts recording joins and clock into a piece's context; returns what turns its summary into its result."""
    clock = RecordingClock()
    expiries: list[Expiry] = []

    def expired(queue_id: str) -> None:
        stamp, other = stamp_of(ctx.line)
        assert join.ops is not None  # recorded until the first eviction, as misses are
        expiries.append(Expiry(queue_id, len(join.ops), clock.count, stamp, other, ctx.line))
        clock.mark()

    maps = {name: RecordingMap(getattr(ctx, name).limit, lookups=name in _LOOKUP_MAPS) for name in _MAPS}
    join = maps[_JOIN] = RecordingMap(ctx.google_queue_ids.limit, ops=True, on_miss=expired)
    ctx.clock = clock
    for name, m in maps.items():
        setattr(ctx, name, m)

    def result(report: Report, holding: bool) -> PieceResult:
        last = expiries[-1].remembered if expiries else 0
        return PieceResult(
            report=report,
            maps={name: m.state() for name, m in maps.items()},
            touched={name: None if m.evicted else m.touched for name, m in maps.items()},
            missed={name: maps[name].missed for name in _LOOKUP_MAPS},
            removed={name: maps[name].removed for name in _LOOKUP_MAPS},
            overflow=any(m.overflow for m in maps.values()),
            expiries=expiries,
            remembered=(join.ops or [])[:last],
            holding=holding,
            trace=clock.kept,
            traced=clock.count,
            latest=clock.state()["latest"],
        )

    return result


# --- The parent's replay at each cut ----------------------------------------------------------------------------


class NotExact(Exception):
    """The replay cannot vouch for a piece's result: it is summarised again from the exact state."""


@dataclass
class LogState:
    """What the lines read so far leave for the next ones: the latest syslog time and the joins' memory."""

    latest: float | None = None
    maps: dict[str, BoundedMap] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: Context) -> LogState:
        maps = {}
        for name in _MAPS:
            source: BoundedMap = getattr(ctx, name)
            m = BoundedMap(source.limit)
            m.update(source)
            maps[name] = m
        return cls(ctx.clock.state()["latest"], maps)

    def into(self, ctx: Context) -> None:
        ctx.clock.restore({"latest": self.latest})
        for name, m in self.maps.items():
            target: BoundedMap = getattr(ctx, name)
            target.clear()
            target.update(m)


def resolve(before: BoundedMap, piece: PieceResult) -> list[Expiry]:
    """The expiries whose Google deferral came before the piece and that the bounded join still held there."""
    if not before or not any(e.queue_id in before for e in piece.expiries):
        return []
    join = BoundedMap(before.limit)
    join.update(before)
    found, done = [], 0
    for e in piece.expiries:
        for key in piece.remembered[done : e.remembered]:
            join.remember(key, "")
        done = e.remembered
        if e.queue_id in join:
            found.append(e)
    return found


def replay_years(
    latest: float | None, piece: PieceResult, added: Sequence[Expiry]
) -> tuple[float | None, list[float | None]]:
    """The year rule over the piece's records from the log's `latest`, with the lines the joins add: the latest
    time after the piece and each added line's time. Raises NotExact when a stamp's time would differ."""
    trace = piece.trace

    def entry(i: int) -> tuple[bytes, float | None, float | None]:
        found = trace.get(i)
        if found is None:
            raise NotExact(f"year record {i} was not sent")
        return found

    shadow = TimestampParser()
    shadow.restore({"latest": latest})
    synced = latest is None  # the piece started without a latest time, as the log then had none
    times: list[float | None] = []
    at = 0
    for stop, line in [*((e.traced, e) for e in added), (piece.traced, None)]:
        while at < stop and not synced:
            stamp, value, after = entry(at)
            if shadow.parse(stamp) != value:
                raise NotExact(f"the year of {stamp!r} depends on the lines before the cut")
            synced = shadow.state()["latest"] == after
            at += 1
        if line is None:
            break
        if synced:
            at = stop
            shadow.restore({"latest": entry(stop - 1)[2] if stop else None})
        if line.stamp is None:
            times.append(line.other_time)
            continue
        times.append(shadow.parse(line.stamp))
        synced = shadow.state()["latest"] == (entry(stop - 1)[2] if stop else None)
    if synced:
        return piece.latest, times
    return shadow.state()["latest"], times


def follow(before: BoundedMap, after: list[list[str]], touched: set[str] | None) -> BoundedMap:
    """A join's memory after a piece, from its memory before and the piece's own: the piece's entries are the
    newest; the earlier ones it did not touch stay before them, the oldest going past the bound. Neither is
    changed later, so one that stays as it was is shared, not copied."""
    if touched is not None and not touched:
        return before
    merged = BoundedMap(before.limit)
    if touched is not None and len(after) < before.limit:
        merged.update(before)  # copied in C, then the few keys the piece touched taken out: the parent merges
        for key in touched:  # while the workers read, on the cores they read with
            merged.pop(key, None)
    for key, value in after:
        merged[key] = value
    while len(merged) > merged.limit:
        merged.popitem(last=False)
    return merged


def check_lookups(state: LogState, piece: PieceResult) -> None:
    """Raises NotExact when the piece looked up or removed a key of OpenSMTPD's joins that the earlier pieces
    left (its result could differ), removed keys after the bound made it forget others, or recorded too much."""
    if piece.overflow and any(state.maps.values()):
        raise NotExact("a join recorded too many keys")
    for name in _LOOKUP_MAPS:
        before = state.maps.get(name)
        if not before:
            continue
        if any(k in before for k in piece.missed[name] | piece.removed[name]):
            raise NotExact(f"{name} joins a line before the cut")
        if piece.touched[name] is None and piece.removed[name]:
            raise NotExact(f"{name} forgot and removed keys")


def advance(
    state: LogState, piece: PieceResult, scratch: Callable[[], Analyser]
) -> tuple[LogState, list[Event]]:
    """The state after a piece and the events its expiries give once joined with the earlier pieces (read by the
    `scratch` analyser); raises NotExact when the piece must be summarised again."""
    check_lookups(state, piece)
    added = resolve(state.maps.get(_JOIN, BoundedMap()), piece)
    latest, times = replay_years(state.latest, piece, added)
    events = []
    for expiry, when in zip(added, times, strict=True):
        reader = scratch()
        reader.context.google_queue_ids.remember(expiry.queue_id, "")
        found = reader.analyse(expiry.line)
        if not isinstance(found, Event):
            raise NotExact("an expiry did not give an event")
        events.append(Event(dataclasses.replace(found.delivery, timestamp=when), found.reply, found.verdict))
    maps = {
        name: follow(state.maps.get(name, BoundedMap()), piece.maps[name], piece.touched[name])
        for name in _MAPS
    }
    return LogState(latest, maps), events


# --- Processes --------------------------------------------------------------------------------------------------

T = TypeVar("T")

_INDEX: Final = struct.Struct("=I")
"""An item's number, as the parent gives a worker its next item."""
_LENGTH: Final = struct.Struct("=Q")
"""The length of the pickled result that follows."""
RESULT_PIPE_BYTES: Final = 1 << 20
"""The pipe a worker sends its results through is made this large where Linux lets it (a piece's result is a few
tens of KiB): the worker goes on with its next item while the parent is busy merging."""


@dataclass(eq=False)
class _Worker:
    """A forked process that summarises one item after another, as the parent gives them."""

    pid: int
    tasks: int | None
    """The pipe the parent writes item numbers to (None once closed: the worker ends when it reads its end)."""
    results: int
    """The pipe the worker sends each result through: its length, then (ok, value) pickled."""
    holding: int | None = None
    """The item it is summarising."""
    data: bytearray = field(default_factory=bytearray)

    def give(self, index: int | None) -> None:
        """Gives it an item to summarise, or none: then it ends."""
        assert self.tasks is not None
        if index is None:
            os.close(self.tasks)
            self.tasks = None
            return
        self.holding = index
        with contextlib.suppress(BrokenPipeError):  # it died: its results pipe ends, and that says so
            os.write(self.tasks, _INDEX.pack(index))

    def result(self) -> bytes | None:
        """The pickled result of the item it holds once all of it came, else None."""
        data = self.data
        if len(data) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(data)
        if len(data) < _LENGTH.size + length:
            return None
        end = _LENGTH.size + length
        assert len(data) == end  # it sends nothing more before it is given its next item
        payload = bytes(data[_LENGTH.size : end])
        self.data = bytearray()
        self.holding = None
        return payload

    def close(self) -> None:
        os.close(self.results)
        if self.tasks is not None:
            os.close(self.tasks)
            self.tasks = None


def in_processes(items: Sequence[Piece], jobs: int, work: Callable[[Piece], T]) -> Generator[T, None, None]:
    """work(item) for each item, by `jobs` forked worker processes that each take the next item when they are free
    (one slowed by other work on the machine takes fewer), yielded in the items' order. A worker that fails raises
    its error here (a read error as itself, anything else as WorkerError naming the item); none outlives the
    caller, which kills those still running when it stops early, and Linux kills them if it dies."""
    preexec = die_with_parent()
    selector = selectors.DefaultSelector()
    workers: dict[int, _Worker] = {}  # by the fd its results come through
    done: dict[int, T] = {}
    following, given = 0, 0

    def next_item() -> int | None:
        nonlocal given
        if given == len(items):
            return None
        given += 1
        return given - 1

    try:
        for _ in range(min(jobs, len(items))):
            worker = _start(items, work, preexec, list(workers.values()))
            workers[worker.results] = worker
            selector.register(worker.results, selectors.EVENT_READ)
            worker.give(next_item())
        while following < len(items):
            if following in done:
                yield done.pop(following)
                following += 1
                continue
            for key, _ in selector.select():
                worker = workers[key.fd]
                chunk = os.read(key.fd, 1 << 20)
                if chunk:
                    worker.data += chunk
                    index = worker.holding
                    payload = worker.result()
                    if index is not None and payload is not None:
                        worker.give(next_item())
                        done[index] = _loaded(items[index], payload)
                    continue
                selector.unregister(key.fd)
                del workers[key.fd]
                worker.close()
                _, status = os.waitpid(worker.pid, 0)
                if worker.holding is not None:
                    raise _died(items[worker.holding], status)
    finally:
        for worker in workers.values():
            os.kill(worker.pid, signal.SIGKILL)
            os.waitpid(worker.pid, 0)
            worker.close()
        selector.close()


def _start(
    items: Sequence[Piece],
    work: Callable[[Piece], Any],
    preexec: Callable[[], None] | None,
    others: list[_Worker],
) -> _Worker:
    tasks_read, tasks_write = os.pipe()
    results_read, results_write = os.pipe()
    # Linux only, and no larger than /proc/sys/fs/pipe-max-size: elsewhere the worker waits for the parent to read.
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(results_write, fcntl.F_SETPIPE_SZ, RESULT_PIPE_BYTES)
    try:
        pid = os.fork()
    except OSError:
        for fd in (tasks_read, tasks_write, results_read, results_write):
            os.close(fd)
        raise
    if pid:
        os.close(tasks_read)
        os.close(results_write)
        return _Worker(pid, tasks_write, results_read)
    code = 1
    try:  # the worker: never returns into the caller's code
        os.close(tasks_write)
        os.close(results_read)
        for other in others:  # the other workers' pipes: theirs end only when the parent closes them
            other.close()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if preexec is not None:
            preexec()
        _serve(items, work, tasks_read, results_write)
        code = 0
    finally:
        os._exit(code)


def _serve(items: Sequence[Piece], work: Callable[[Piece], Any], tasks: int, results: int) -> None:
    """A worker's loop: the items the parent gives, each summarised and its result sent, until it gives none."""
    while True:
        header = _read_exactly(tasks, _INDEX.size)
        if header is None:
            return
        (index,) = _INDEX.unpack(header)
        item = items[index]
        try:
            payload = pickle.dumps((True, work(item)), pickle.HIGHEST_PROTOCOL)
        except READ_ERRORS as err:
            payload = pickle.dumps((False, err))
        except BaseException as err:  # any failure goes to the parent, as text
            payload = pickle.dumps((False, WorkerError(f"{item.describe()}: {type(err).__name__}: {err}")))
        view = memoryview(_LENGTH.pack(len(payload)) + payload)
        while view:
            view = view[os.write(results, view) :]


def _read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes from a pipe, or None at its end."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _loaded(item: Piece, payload: bytes) -> Any:
    try:
        ok, value = pickle.loads(payload)
    except Exception as err:
        raise WorkerError(f"{item.describe()}: the process summarising it sent no result ({err})") from None
    if not ok:
        raise value
    return value


def _died(item: Piece, status: int) -> WorkerError:
    if os.WIFSIGNALED(status):
        return WorkerError(
            f"{item.describe()}: the process summarising it was killed by signal {os.WTERMSIG(status)}"
        )
    return WorkerError(f"{item.describe()}: the process summarising it ended without its result")


# --- The report -------------------------------------------------------------------------------------------------


def build_report(
    paths: Sequence[str],
    analyser: Analyser,
    pieces: Sequence[Piece],
    jobs: int,
    progress: Progress | None = None,
) -> Report:
    """The report of `paths` from its pieces, summarised by `jobs` processes; equal to offline.build_report's.
    `progress` hears of each piece once merged."""
    pristine = analyser  # never reads: the workers fork from it, and each piece is read by a copy of it
    scratch = functools.cache(pristine.copy)

    def work(piece: Piece) -> PieceResult:
        """A piece's result, in a worker: read from the pristine state by a copy of the analyser, which shares what
        the worker's earlier pieces taught it (see Analyser.copy)."""
        reader = pristine.copy()
        finish = record(reader.context)
        report = Report(files=[], rules=reader.rules)
        summarise(report, reader, piece.path, start=piece.start, end=piece.end, flush=piece.last)
        report.rules = None
        return finish(report, not piece.last and reader.holding())

    def again(state: LogState, piece: Piece) -> tuple[Report, LogState]:
        """The piece summarised in this process, from the exact state the earlier ones left."""
        fresh = pristine.copy()
        state.into(fresh.context)
        report = Report(files=[], rules=analyser.rules)
        summarise(report, fresh, piece.path, start=piece.start, end=piece.end, flush=piece.last)
        return report, LogState.of(fresh.context)

    total = Report(files=list(paths), rules=analyser.rules)
    state = LogState()
    held: Piece | None = None
    """The first of pieces that ended inside free text: they are read again with the piece that ends it."""
    reader: Analyser | None = None
    """This process's analyser while it reads local pieces one after another (its state is the exact one)."""
    results = in_processes([piece for piece in pieces if not piece.local], jobs, work)
    try:
        for piece in pieces:
            if progress is not None and progress.enabled:
                progress.update(
                    (os.path.getsize(piece.path) if piece.end is None else piece.end) - piece.start
                )
            if piece.local:
                if reader is None:
                    reader = pristine.copy()
                    state.into(reader.context)
                report = Report(files=[], rules=analyser.rules)
                summarise(report, reader, piece.path)
                total.merge(report)
                continue
            if reader is not None:
                state, reader = LogState.of(reader.context), None
            result = next(results)
            events: list[Event] = []
            if held is not None or result.holding:
                held = held or piece
                if result.holding:
                    continue
                report, state = again(state, Piece(piece.path, held.start, piece.end, piece.last))
                held = None
            else:
                try:
                    state, events = advance(state, result, scratch)
                    report = result.report
                except NotExact:
                    report, state = again(state, piece)
            total.merge(report)
            for event in events:
                total.add(event)
    finally:
        results.close()
    return total
